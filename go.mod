module github.com/zest-stm/zest

go 1.26.0
