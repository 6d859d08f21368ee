package main

import "regexp"

func regexpMust(re string) *regexp.Regexp { return regexp.MustCompile("(?m)" + re) }
