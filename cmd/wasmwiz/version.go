package main

import (
	"runtime"
	"runtime/debug"
)

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

func goVersion() string { return runtime.Version() }
