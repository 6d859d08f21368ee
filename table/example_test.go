package table_test

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// Inventory maps item names to counts. It holds a map, so it implements
// Clone to keep values private.
type Inventory map[string]int

func (inv Inventory) Clone() Inventory { return maps.Clone(inv) }

func ExampleTable() {
	db, _ := stm.Open(nil)
	bags, _ := table.New[string, Inventory](db, "bags")
	ctx := context.Background()

	_ = db.Run(ctx, func(tx *stm.Tx) error {
		bags.Put(tx, "alice", Inventory{"potion": 2, "sword": 1})
		return nil
	})
	errMissing := errors.New("item missing")
	use := func(item string) error {
		return db.Run(ctx, func(tx *stm.Tx) error {
			inv, _ := bags.Get(tx, "alice")
			if inv[item] == 0 {
				return errMissing
			}
			inv[item]--
			bags.Put(tx, "alice", inv)
			return nil
		})
	}
	fmt.Println(use("potion"), use("shield"))
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		inv, _ := bags.Get(tx, "alice")
		fmt.Println(inv["potion"], inv["sword"], bags.Len(tx))
		return nil
	})
	// Output:
	// <nil> item missing
	// 1 1 1
}
