package bench

import (
	"bytes"
	_ "embed"
	"fmt"
	"slices"
	"sync"

	"github.com/wasmwiz/wasmwiz/internal/gowasm"
)

// The bench's own guests. They are innocent programs, kept apart from the test fixtures
// (internal/fixtures, which embeds hostile guests and links package testing) so that the
// wasmwiz binary carries neither.

// echoWasm is guests/echo.wat (stdin to stdout), a copy of the fixture of the same name, built with
//
//	wat2wasm guests/echo.wat -o guests/echo.wasm
//
//go:embed guests/echo.wasm
var echoWasm []byte

// cpuWasm is guests/cpu.wat (1 million rounds of an integer mix), built with
//
//	wat2wasm guests/cpu.wat -o guests/cpu.wasm
//
//go:embed guests/cpu.wasm
var cpuWasm []byte

// sha256Source is guests/sha256/main.go, built at run time by gowasm.Build.
//
//go:embed guests/sha256/main.go
var sha256Source []byte

// ModuleNames are the modules the bench knows, in its default order.
var ModuleNames = []string{"echo", "probe", "cpu"}

var goGuest struct {
	once sync.Once
	wasm []byte
	err  error
}

// guest returns the module called name with its stdin: echo (a tiny .wat copying stdin),
// probe (a Go wasip1 program hashing 1 KiB of stdin; built once per process) or cpu.
func guest(name string) (wasm, stdin []byte, err error) {
	switch name {
	case "echo":
		return slices.Clone(echoWasm), []byte("hello, wasmwiz\n"), nil
	case "probe":
		goGuest.once.Do(func() { goGuest.wasm, goGuest.err = gowasm.Build(sha256Source) })
		if goGuest.err != nil {
			return nil, nil, goGuest.err
		}
		return slices.Clone(goGuest.wasm), bytes.Repeat([]byte("0123456789abcdef"), 64), nil
	case "cpu":
		return slices.Clone(cpuWasm), nil, nil
	}
	return nil, nil, fmt.Errorf("unknown module %q (have echo, probe, cpu)", name)
}
