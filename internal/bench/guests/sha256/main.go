//go:build wasip1

// Command sha256 is the bench's Go guest: it prints the lower-case hex SHA-256 of its stdin
// and "\n" (what the test probe in internal/fixtures does by default). internal/bench builds it
// with gowasm.Build, i.e.
//
//	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -o sha256.wasm .
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
)

func main() {
	h := sha256.New()
	if _, err := io.Copy(h, os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "sha256: read stdin:", err)
		os.Exit(1)
	}
	fmt.Printf("%x\n", h.Sum(nil))
}
