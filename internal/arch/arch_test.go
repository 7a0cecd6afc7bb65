// SPDX-License-Identifier: Apache-2.0

package arch

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/stargz-store/stargz-store"

// rank is docs/design.md's dependency table: a package may import only
// packages of a lower rank.
var rank = map[string]int{
	"refspec": 0, "cachedir": 0, "systemd": 0, "store/index": 0,
	"internal/flight": 0, "internal/limit": 0, "internal/arch": 0, "store/elfdeps": 0, "internal/faultproxy": 0,
	"internal/podmanconf": 0, "internal/logthrottle": 0,
	"registryauth": 1, "store/estargz": 1, "store/zstdchunked": 1,
	"store/remote": 2,
	"store":        3,
	"layerfs":      4, "convert": 4, "convert/optimize": 4,
	"cmd/stargz-store": 5, "cmd/stargz-bench": 5, "tests/faultproxy": 5,
}

// onlyIn lists external packages that only the named packages may import.
var onlyIn = map[string][]string{
	"github.com/hanwen/go-fuse/v2": {"layerfs", "cmd/stargz-store"},
	"github.com/BurntSushi/toml":   {"cmd/stargz-store"},
	// The store speaks HTTP only through its registry client.
	"net/http": {"store/remote", "registryauth", "convert", "convert/optimize", "cmd/stargz-bench", "internal/faultproxy", "tests/faultproxy"},
}

type pkg struct {
	ImportPath string
	Imports    []string
	Doc        string
	Name       string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages, want the whole module", len(pkgs))
	}
	return pkgs
}

func TestDependencyDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if strings.HasPrefix(name, "internal/testutil") || strings.HasPrefix(name, "tests/") {
			continue // test helpers and test programs, never shipped
		}
		r, ok := rank[name]
		if !ok {
			t.Errorf("package %s has no rank in the dependency table", name)
			continue
		}
		for _, imp := range p.Imports {
			checkImport(t, name, r, imp)
		}
	}
}

func checkImport(t *testing.T, name string, r int, imp string) {
	t.Helper()
	if dep, ok := strings.CutPrefix(imp, module+"/"); ok {
		if strings.HasPrefix(dep, "internal/testutil") {
			t.Errorf("%s imports test helpers %s outside tests", name, dep)
		} else if dr, known := rank[dep]; known && dr >= r {
			t.Errorf("%s (rank %d) imports %s (rank %d): only lower ranks allowed", name, r, dep, dr)
		}
		return
	}
	for prefix, allowed := range onlyIn {
		if strings.HasPrefix(imp, prefix) && !contains(allowed, name) {
			t.Errorf("%s imports %s, reserved to %v", name, imp, allowed)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Name == "main" {
			if !strings.HasPrefix(p.Doc, "Command ") {
				t.Errorf("%s: package doc %q should start with \"Command \"", p.ImportPath, p.Doc)
			}
			continue
		}
		if !strings.HasPrefix(p.Doc, "Package "+p.Name+" ") {
			t.Errorf("%s: package doc %q should start with \"Package %s \"", p.ImportPath, p.Doc, p.Name)
		}
	}
}
