// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
)

func TestPrioritizeFiles(t *testing.T) {
	l1, l2, other := digest.FromString("l1"), digest.FromString("l2"), digest.FromString("other")
	tests := []struct {
		name      string
		in        []AccessedFile
		wantNames []string
		wantTotal int64
		wantPer   []int
	}{
		{name: "nothing", wantPer: []int{0, 0}},
		{
			name: "first access order across layers",
			in: []AccessedFile{
				{l2, "usr/bin/python3.11", 100},
				{l1, "usr/lib/x86_64-linux-gnu/libc.so.6", 50},
				{l2, "etc/ld.so.cache", 7},
			},
			wantNames: []string{"usr/bin/python3.11", "usr/lib/x86_64-linux-gnu/libc.so.6", "etc/ld.so.cache"},
			wantTotal: 157, wantPer: []int{1, 2},
		},
		{
			name: "names cleaned and listed once, the first access wins",
			in: []AccessedFile{
				{l2, "./a//b", 3},
				{l1, "a/b", 4},
				{l2, "/c", 1},
			},
			wantNames: []string{"a/b", "c"}, wantTotal: 4, wantPer: []int{0, 2},
		},
		{
			name: "unknown layers, landmarks and the root are dropped",
			in: []AccessedFile{
				{other, "x", 9},
				{l1, ".prefetch.landmark", 1},
				{l1, ".no.prefetch.landmark", 1},
				{l1, "/", 0},
				{l1, "y", 2},
			},
			wantNames: []string{"y"}, wantTotal: 2, wantPer: []int{1, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PrioritizeFiles(tt.in, []digest.Digest{l1, l2})
			if !slices.Equal(p.Names, tt.wantNames) {
				t.Errorf("Names = %q, want %q", p.Names, tt.wantNames)
			}
			if p.TotalSize != tt.wantTotal {
				t.Errorf("TotalSize = %d, want %d", p.TotalSize, tt.wantTotal)
			}
			var per []int
			for _, l := range p.PerLayer {
				per = append(per, l.Files)
			}
			if !slices.Equal(per, tt.wantPer) {
				t.Errorf("PerLayer files = %v, want %v", per, tt.wantPer)
			}
			if len(p.Files) != len(p.Names) {
				t.Errorf("len(Files) = %d, len(Names) = %d", len(p.Files), len(p.Names))
			}
		})
	}
}

func TestPrioritizedReport(t *testing.T) {
	l1 := digest.FromString("l1")
	p := PrioritizeFiles([]AccessedFile{{l1, "bin/sh", 2048}, {l1, "etc/passwd", 10}}, []digest.Digest{l1})
	var b strings.Builder
	if err := p.Report(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"      2048 /bin/sh\n", "        10 /etc/passwd\n", "layer 1/1: 2 files, 2058 bytes prioritized (recorded as " + l1.String() + ")\n", "prioritized 2 files, 2058 bytes (2.0 KiB)\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("Report() = %q, want it to contain %q", b.String(), want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"}, {5 << 40, "5120.0 GiB"}}
	for _, tt := range tests {
		if got := humanBytes(tt.in); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestScanOutput(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		re    string
		match bool
	}{
		{"match on a later line", "starting\nServing on :8080\nmore\n", `^Serving`, true},
		{"last line without newline", "a\nready", `^ready$`, true},
		{"no match", "a\nb\n", `ready`, false},
		{"no regexp", "a\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var re *regexp.Regexp
			if tt.re != "" {
				re = regexp.MustCompile(tt.re)
			}
			var out strings.Builder
			matched := make(chan struct{})
			scanOutput(strings.NewReader(tt.in), &out, re, matched)
			got := false
			select {
			case <-matched:
				got = true
			default:
			}
			if got != tt.match {
				t.Errorf("matched = %v, want %v", got, tt.match)
			}
			if out.String() != tt.in {
				t.Errorf("output = %q, want %q", out.String(), tt.in)
			}
		})
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/a/b", "/a/b"},
		{`/a\040b`, "/a b"},
		{`/a\011b\134`, "/a\tb\\"},
		{`/a\09`, `/a\09`},
		{`/a\`, `/a\`},
	}
	for _, tt := range tests {
		if got := unescapeMountinfo(tt.in); got != tt.want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMountsBelowNothingMounted(t *testing.T) {
	got, err := MountsBelow(t.TempDir())
	if err != nil || len(got) != 0 {
		t.Errorf("MountsBelow(fresh dir) = %v, %v; want none", got, err)
	}
}

func TestScratchRegistry(t *testing.T) {
	dir := t.TempDir()
	r, err := StartScratchRegistry(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Get("http://" + r.Addr() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/ = %s", resp.Status)
	}
	if got, want := r.Ref("a/b", "t"), r.Addr()+"/a/b:t"; got != want {
		t.Errorf("Ref() = %q, want %q", got, want)
	}
	conf, err := r.RegistriesConf()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(conf); !strings.Contains(string(b), `location = "`+r.Addr()+`"`) || !strings.Contains(string(b), "insecure = true") {
		t.Errorf("registries.conf = %q", b)
	}

	// The drop-ins of the base directory stay, ours comes last.
	t.Setenv("CONTAINERS_REGISTRIES_CONF", "")
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "10-mirrors.conf"), []byte("# mirrors\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	orig := &types.SystemContext{SystemRegistriesConfDirPath: base, DockerCertPath: "/certs"}
	sys, err := r.SystemContext(orig)
	if err != nil {
		t.Fatal(err)
	}
	if orig.SystemRegistriesConfDirPath != base || sys.DockerCertPath != "/certs" {
		t.Errorf("SystemContext modified its base or lost fields: %+v", sys)
	}
	ents, err := os.ReadDir(sys.SystemRegistriesConfDirPath)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"10-mirrors.conf", "zzzz-stargz-optimize.conf"}; !slices.Equal(names, want) {
		t.Errorf("drop-ins = %q, want %q", names, want)
	}
	if sys.DockerInsecureSkipTLSVerify == types.OptionalBoolTrue {
		t.Error("SystemContext turned TLS verification off for every registry")
	}

	// A registries.conf named by the environment is read without
	// drop-ins unless named in the SystemContext.
	t.Setenv("CONTAINERS_REGISTRIES_CONF", "/env/registries.conf")
	sys, err = r.SystemContext(nil)
	if err != nil {
		t.Fatal(err)
	}
	if sys.SystemRegistriesConfPath != "/env/registries.conf" || sys.SystemRegistriesConfDirPath == "" {
		t.Errorf("SystemContext(nil) with CONTAINERS_REGISTRIES_CONF = %+v", sys)
	}
}
