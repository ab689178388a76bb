package test

import "github.com/wasmwiz/wasmwiz/internal/fixtures"

// Generated modules (internal/fixtures/gen.go, shared with the executor's benchmarks), under
// the short names the tests here use.
var (
	genModule     = fixtures.GenModule
	genDataModule = fixtures.GenDataModule
	patAdd        = fixtures.PatAdd
	patDrop       = fixtures.PatDrop
	section       = fixtures.Section
	uleb          = fixtures.ULEB128
)
