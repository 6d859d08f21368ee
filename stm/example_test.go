package stm_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/zest-stm/zest/stm"
)

func ExampleDB_Run() {
	db, _ := stm.Open(nil)
	gold := stm.NewVar[int64](nil, 100)
	ctx := context.Background()

	errNotEnough := errors.New("not enough gold")
	spend := func(n int64) error {
		return db.Run(ctx, func(tx *stm.Tx) error {
			g, _ := gold.Load(tx)
			if g < n {
				return errNotEnough // rolls back: nothing is written
			}
			gold.Store(tx, g-n)
			return nil
		})
	}
	fmt.Println(spend(30), spend(100))
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		g, _ := gold.Load(tx)
		fmt.Println("gold left:", g)
		return nil
	})
	// Output:
	// <nil> not enough gold
	// gold left: 70
}

func ExampleRunValue() {
	db, _ := stm.Open(nil)
	hp := stm.NewVar[int](nil, 40)
	left, err := stm.RunValue(context.Background(), db, func(tx *stm.Tx) (int, error) {
		v, _ := hp.Load(tx)
		hp.Store(tx, v-15)
		return v - 15, nil
	})
	fmt.Println(left, err)
	// Output: 25 <nil>
}

func ExampleTx_Savepoint() {
	db, _ := stm.Open(nil)
	a := stm.NewVar[string](nil, "sword")
	_ = db.Run(context.Background(), func(tx *stm.Tx) error {
		err := tx.Savepoint(func(tx *stm.Tx) error {
			a.Store(tx, "broken sword")
			return errors.New("enchantment failed")
		})
		v, _ := a.Load(tx) // the savepoint's write was rolled back
		fmt.Println(v, "/", err)
		return nil
	})
	// Output: sword / enchantment failed
}
