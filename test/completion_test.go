package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// completionCase is a command line typed up to the cursor (at its end), the candidates the
// shell must offer there and the ones it must not, and (zsh) the line after one Tab.
type completionCase struct {
	line      string
	want, not []string
	exact     bool   // the candidates are want, no more
	after     string // zsh: the line after Tab; "" leaves it unchecked
}

// completionCases are asked of both shells, in a directory holding hello.wasm and help.txt and
// with the contexts dev, staging and prod saved.
var completionCases = []completionCase{
	{line: "wasmwiz ", want: []string{"run", "modules", "executions", "keys", "context", "login", "dev", "completion", "version"},
		not: []string{"__complete", "worker"}, after: "wasmwiz "},
	{line: "wasmwiz executions ", want: []string{"get", "list", "wait"}, exact: true, after: "wasmwiz executions "},
	{line: "wasmwiz executions wa", want: []string{"wait"}, exact: true, after: "wasmwiz executions wait "},
	{line: "wasmwiz mo", want: []string{"modules"}, exact: true, after: "wasmwiz modules "},
	{line: "wasmwiz modules list --j", want: []string{"--json"}, exact: true, after: "wasmwiz modules list --json "},
	{line: "wasmwiz run --st", want: []string{"--stdin", "--stdin-file"}, exact: true},
	{line: "wasmwiz context use ", want: []string{"dev", "prod", "staging"}, exact: true},
	{line: "wasmwiz keys list --context st", want: []string{"staging"}, exact: true, after: "wasmwiz keys list --context staging "},
	// Not a command, flag or context: the shell's own file names.
	{line: "wasmwiz run hel", want: []string{"hello.wasm", "help.txt"}, exact: true, after: "wasmwiz run hel"},
}

// completionHome is a directory with two files to complete and a config directory with three
// contexts, and the environment that finds wasmwiz on PATH (as the scripts call it) and the
// contexts there.
func completionHome(t *testing.T) (string, []string) {
	home := t.TempDir()
	for _, f := range []string{"hello.wasm", "help.txt"} {
		if err := os.WriteFile(filepath.Join(home, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(home, "config")
	if err := os.Mkdir(cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := `{"current":"dev","contexts":{"dev":{"url":"http://127.0.0.1:1","key":"k1"},` +
		`"staging":{"url":"http://127.0.0.1:2","key":"k2"},"prod":{"url":"http://127.0.0.1:3","key":"k3"}}}`
	if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return home, []string{"PATH=" + filepath.Dir(bin()) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + home, "WASMWIZ_CONFIG_DIR=" + cfg}
}

func checkCandidates(t *testing.T, shell string, c completionCase, got []string) {
	t.Helper()
	for _, w := range c.want {
		if !slices.Contains(got, w) {
			t.Errorf("%s completion of %q: %q missing from %q", shell, c.line, w, got)
		}
	}
	for _, w := range c.not {
		if slices.Contains(got, w) {
			t.Errorf("%s completion of %q: %q offered: %q", shell, c.line, w, got)
		}
	}
	if c.exact && len(got) != len(c.want) {
		t.Errorf("%s completion of %q: %q, want just %q", shell, c.line, got, c.want)
	}
}

// zshDriver runs an interactive zsh in a pseudo-terminal (zsh/zpty) with compinit and the
// script `wasmwiz completion zsh` prints, types each argument followed by Tab, and prints what
// completion offered (every match compadd added, as <<CAND word>>) and the line after the Tab
// (<<BUFFER:line>>). The markers are printed through ${:-…} so that the echo of the commands
// typed to set this up never contains them.
const zshDriver = `zmodload zsh/zpty || exit 3
zpty z zsh -f -i
send() { zpty -w z "$1" }
send 'PROMPT= RPROMPT= ; autoload -U compinit && compinit -u -D'
send 'source <(wasmwiz completion zsh)'
send 'bindkey "^I" complete-word'
send 'compadd() { if [[ ${@[1,(i)(-|--)]} != *-(O|A|D)\ * ]]; then local -a __h; builtin compadd -A __h "$@"; local x; for x in "${__h[@]}"; do print -r -- "<<${:-CAND} $x>>"; done; fi; builtin compadd "$@" }'
send '__show() { print -r -- "<<${:-BUFFER}:$BUFFER>>" }; zle -N __show; bindkey "^X" __show'
send 'print -r -- "<<${:-READY}>>"'
zpty -r z out '*<<READY>>*' || exit 4
for line in "$@"; do
  zpty -n -w z "$line"$'\t\C-x'
  zpty -r z out '*<<BUFFER:*>>*' || exit 5
  print -r -- "@@CASE $line"
  print -r -- "${out//$'\r'}"
  zpty -n -w z $'\C-u'
done
zpty -d z
`

var (
	zshCandidate = regexp.MustCompile(`<<CAND ([^>]*)>>`)
	zshBuffer    = regexp.MustCompile(`<<BUFFER:([^>]*)>>`)
)

// TestCLI_ZshCompletion completes in a real interactive zsh: the script registers itself with
// compinit's compdef, asks wasmwiz for commands, subcommands, flags and context names, and
// leaves the rest to zsh's own file completion.
func TestCLI_ZshCompletion(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("zsh is not installed (Debian's zsh package; .ci/run installs it)")
	}
	home, env := completionHome(t)
	lines := make([]string, len(completionCases))
	for i, c := range completionCases {
		lines[i] = c.line
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, zsh, append([]string{"-f", "-c", zshDriver, "zsh"}, lines...)...)
	cmd.Dir, cmd.Env = home, append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("zsh: %v\n%s", err, b)
	}
	blocks := strings.Split(string(b), "@@CASE ")[1:]
	if len(blocks) != len(completionCases) {
		t.Fatalf("zsh answered %d of %d lines:\n%s", len(blocks), len(completionCases), b)
	}
	for i, c := range completionCases {
		var got []string
		for _, m := range zshCandidate.FindAllStringSubmatch(blocks[i], -1) {
			got = append(got, m[1])
		}
		checkCandidates(t, "zsh", c, got)
		buf := zshBuffer.FindStringSubmatch(blocks[i])
		if buf == nil {
			t.Errorf("zsh completion of %q: no line after Tab:\n%s", c.line, blocks[i])
		} else if c.after != "" && buf[1] != c.after {
			t.Errorf("zsh completion of %q: the line after Tab is %q, want %q", c.line, buf[1], c.after)
		}
	}
}

// TestCLI_BashCompletion sources the script `wasmwiz completion bash` prints, finds the function
// `complete -p wasmwiz` registered, and calls it as bash's programmable completion does (COMP_*
// set, the command, the word and the one before it as arguments); where it offers nothing,
// bash's default (file names) is what `complete -o default` asks for.
func TestCLI_BashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	home, env := completionHome(t)
	for _, c := range completionCases {
		words := strings.Split(c.line, " ")
		q := make([]string, len(words))
		for i, w := range words {
			q[i] = "'" + w + "'"
		}
		prev := ""
		if len(words) > 1 {
			prev = words[len(words)-2]
		}
		sh := `set -e
source <(wasmwiz completion bash)
spec=$(complete -p wasmwiz)
[[ $spec == *" -o default "* ]] || { echo "no -o default: $spec"; exit 3; }
fn=${spec##*-F }; fn=${fn%% *}
COMP_WORDS=(` + strings.Join(q, " ") + `); COMP_CWORD=` + itoa(len(words)-1) + `
COMP_LINE='` + c.line + `'; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
"$fn" wasmwiz '` + words[len(words)-1] + `' '` + prev + `'
if (( ${#COMPREPLY[@]} == 0 )); then compgen -f -- '` + words[len(words)-1] + `'; fi
printf '%s\n' "${COMPREPLY[@]}"
`
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", sh)
		cmd.Dir, cmd.Env = home, append(os.Environ(), env...)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s", c.line, err, b)
		}
		var got []string
		for _, w := range strings.Split(string(b), "\n") {
			if w = strings.TrimSuffix(w, " "); w != "" {
				got = append(got, w)
			}
		}
		checkCandidates(t, "bash", c, got)
	}
}
