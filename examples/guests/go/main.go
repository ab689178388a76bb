// Command greet is a WasmWiz guest in Go (GOOS=wasip1): it greets its arguments and counts the
// lines, words and bytes of its stdin. $GREETING replaces "hello".
//
//	GOOS=wasip1 GOARCH=wasm go build -o greet-go.wasm .
//	wasmwiz run --stdin 'one two' greet-go.wasm -- Ada Grace
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

func main() {
	greeting := os.Getenv("GREETING")
	if greeting == "" {
		greeting = "hello"
	}
	who := "world"
	if len(os.Args) > 1 {
		who = strings.Join(os.Args[1:], " and ")
	}
	fmt.Printf("%s, %s!\n", greeting, who)

	var lines, words, bytes int
	r := bufio.NewReader(os.Stdin)
	inWord := false
	for {
		c, err := r.ReadByte()
		if err != nil {
			break
		}
		bytes++
		if c == '\n' {
			lines++
		}
		space := c == ' ' || c == '\n' || c == '\t' || c == '\r'
		if !space && !inWord {
			words++
		}
		inWord = !space
	}
	fmt.Printf("stdin: %d lines, %d words, %d bytes\n", lines, words, bytes)
}
