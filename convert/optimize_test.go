// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
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
