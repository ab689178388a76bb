package sqlite_test

import (
	"testing"

	"github.com/wasmwiz/wasmwiz/accounting/storetest"
)

func TestStore_Contract(t *testing.T) {
	storetest.Run(t, storetest.Factories["sqlite"])
}

func BenchmarkStore_Insert(b *testing.B) {
	storetest.Bench(b, storetest.Factories["sqlite"])
}
