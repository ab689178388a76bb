// Command measure prints, for the tree at its argument (default .): lines of code and of tests
// per package directory, Test functions per package, and the longest functions (go/parser).
// Generated files ("Code generated ... DO NOT EDIT.") are left out.
// Used for the before/after notes of layout changes: go run ./.ci/measure [dir]
// Import arrows between the module's packages: sh .ci/measure/arrows.sh
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type fn struct {
	name  string
	lines int
}

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	code := map[string]int{}
	tests := map[string]int{}
	testFns := map[string]int{}
	var fns []fn
	fset := token.NewFileSet()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		b, _ := os.ReadFile(p)
		n := strings.Count(string(b), "\n")
		f, err := parser.ParseFile(fset, p, b, parser.ParseComments)
		if err != nil || ast.IsGenerated(f) { // generated code (clients/go) is not the layout's
			return nil
		}
		isTest := strings.HasSuffix(p, "_test.go")
		if isTest {
			tests[rel] += n
		} else {
			code[rel] += n
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			if isTest && strings.HasPrefix(fd.Name.Name, "Test") {
				testFns[rel]++
			}
			if !isTest {
				l := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
				name := fd.Name.Name
				if fd.Recv != nil && len(fd.Recv.List) > 0 {
					t := fd.Recv.List[0].Type
					if s, ok := t.(*ast.StarExpr); ok {
						t = s.X
					}
					if id, ok := t.(*ast.Ident); ok {
						name = id.Name + "." + name
					}
				}
				fns = append(fns, fn{rel + "." + name, l})
			}
		}
		return nil
	})
	var pkgs []string
	for p := range code {
		pkgs = append(pkgs, p)
	}
	for p := range tests {
		if _, ok := code[p]; !ok {
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	fmt.Printf("%-28s %6s %6s %6s\n", "package", "code", "test", "Test*")
	for _, p := range pkgs {
		fmt.Printf("%-28s %6d %6d %6d\n", p, code[p], tests[p], testFns[p])
	}
	sort.Slice(fns, func(i, j int) bool { return fns[i].lines > fns[j].lines })
	fmt.Println("\nlongest functions:")
	for _, f := range fns[:15] {
		fmt.Printf("  %4d %s\n", f.lines, f.name)
	}
}
