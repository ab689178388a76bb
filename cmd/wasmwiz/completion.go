package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// commandTree is every command a person types, with its subcommands: what completion offers.
var commandTree = map[string][]string{
	"dev": nil, "gateway": nil, "executor": nil, "accounting": {"reconcile", "migrate"},
	"admin": {"bootstrap"}, "secrets": {"generate", "nats-tenant"}, "events": {"tail"},
	"dlq": {"list", "show", "replay", "purge"},
	"run": nil, "modules": {"upload", "list", "get", "delete"}, "executions": {"list", "get", "wait"},
	"keys": {"list", "create", "revoke", "rotate", "token", "tenants", "tenant-create", "tenant-update",
		"admin-create", "admin-rotate", "admin-revoke"},
	"usage": nil, "load": nil, "bench": nil, "version": nil,
	"login": nil, "context": {"list", "use", "remove", "show"}, "completion": {"bash", "zsh"}, "help": nil,
}

const completionUsage = `usage: wasmwiz completion bash|zsh

Prints a completion script: commands, subcommands, flags and saved context names, asked of
wasmwiz itself as you type (so it never goes stale); files otherwise.

  bash:  source <(wasmwiz completion bash)      # or save it in /etc/bash_completion.d/wasmwiz
  zsh:   source <(wasmwiz completion zsh)       # after compinit; or save it as _wasmwiz in $fpath`

const bashCompletion = `# bash completion for wasmwiz: source <(wasmwiz completion bash)
_wasmwiz() {
  local IFS=$'\n'
  COMPREPLY=($("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -o nospace -F _wasmwiz wasmwiz
`

const zshCompletion = `#compdef wasmwiz
# zsh completion for wasmwiz: source <(wasmwiz completion zsh) after compinit
_wasmwiz() {
  local -a out
  out=("${(@f)$(${words[1]} __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  out=(${out:#})
  if (( ${#out} )); then
    compadd -S ' ' -- "${out[@]%% }"
  else
    _files
  fi
}
compdef _wasmwiz wasmwiz
`

func runCompletion(args []string, stdout io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stdout, completionUsage)
		return nil
	}
	if len(args) != 1 {
		return usageError{completionUsage}
	}
	switch args[0] {
	case "bash":
		_, err := io.WriteString(stdout, bashCompletion)
		return err
	case "zsh":
		_, err := io.WriteString(stdout, zshCompletion)
		return err
	}
	return usageError{completionUsage}
}

var helpFlagLine = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// complete prints the candidates for the last of words (the words after "wasmwiz", the last
// being the one under the cursor, maybe empty), one a line, each ending in a space when nothing
// more of it is to be typed; nothing lets the shell complete file names.
func complete(ctx context.Context, words []string, getenv func(string) string, stdout io.Writer) {
	if len(words) == 0 {
		words = []string{""}
	}
	cur := words[len(words)-1]
	offer := func(cands []string) {
		for _, c := range cands {
			if strings.HasPrefix(c, cur) {
				fmt.Fprintln(stdout, c+" ")
			}
		}
	}
	if len(words) == 1 {
		offer(slices.Sorted(mapKeys(commandTree)))
		return
	}
	cmd := words[0]
	subs, known := commandTree[cmd]
	if !known {
		return
	}
	path := []string{cmd}
	if len(subs) > 0 {
		if len(words) == 2 && !strings.HasPrefix(cur, "-") {
			offer(subs)
			return
		}
		if slices.Contains(subs, words[1]) {
			path = append(path, words[1])
		}
	}
	switch {
	case strings.HasPrefix(cur, "-"):
		// A command's flags, as its -h lists them (with no environment, so that nothing is set).
		var out bytes.Buffer
		noEnv := func(string) string { return "" }
		if cmd != "help" && cmd != "completion" {
			run(ctx, append(slices.Clone(path), "-h"), noEnv, &out, &out)
		}
		var flags []string
		for _, m := range helpFlagLine.FindAllStringSubmatch(out.String(), -1) {
			flags = append(flags, "--"+m[1])
		}
		offer(flags)
	case cmd == "context" && len(path) == 2 && (path[1] == "use" || path[1] == "remove") && len(words) == 3,
		words[len(words)-2] == "--context":
		dir, err := configDir(getenv)
		if err != nil {
			return
		}
		if cfg, err := loadConfig(dir); err == nil {
			offer(slices.Sorted(mapKeys(cfg.Contexts)))
		}
	case cmd == "completion" && len(words) == 2:
		offer([]string{"bash", "zsh"})
	}
}
