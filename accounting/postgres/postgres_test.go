package postgres_test

import (
	"testing"

	"github.com/wasmwiz/wasmwiz/accounting/storetest"
)

func TestStore_Contract(t *testing.T) {
	storetest.DatabaseURL(t)
	storetest.Run(t, storetest.Factories["postgres"])
}

func BenchmarkStore_Insert(b *testing.B) {
	storetest.DatabaseURL(b)
	storetest.Bench(b, storetest.Factories["postgres"])
}
