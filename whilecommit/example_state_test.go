package whilecommit_test

import (
	"context"
	"fmt"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/whilecommit"
)

// announcements collects the names a transaction announces and prints
// them once it has committed: one State per transaction instead of one
// closure per name.
type announcements struct{ names []string }

func (a *announcements) Mark() int           { return len(a.names) }
func (a *announcements) RollbackTo(mark int) { a.names = a.names[:mark] }
func (a *announcements) End(committed bool) {
	if committed {
		fmt.Println("announce", a.names)
	}
}

type announceKey struct{}

func newAnnouncements() whilecommit.State { return new(announcements) }

func announce(tx *stm.Tx, name string) {
	a := whilecommit.Attach(tx, announceKey{}, newAnnouncements).(*announcements)
	a.names = append(a.names, name)
}

func ExampleAttach() {
	db, _ := stm.Open(nil)
	_ = db.Run(context.Background(), func(tx *stm.Tx) error {
		announce(tx, "alice")
		_ = tx.Savepoint(func(tx *stm.Tx) error {
			announce(tx, "mallory")
			return fmt.Errorf("refused") // rolls back mallory
		})
		announce(tx, "bob")
		return nil
	})
	// Output: announce [alice bob]
}
