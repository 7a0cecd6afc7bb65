// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"math"
	"testing"
)

func TestDiffIno(t *testing.T) {
	tests := []struct {
		layer, entry uint32
		want         uint64
	}{
		{1, 1, 1<<32 | 1},
		{2, 1, 2<<32 | 1},
		{1, math.MaxUint32, 1<<32 | math.MaxUint32},
		{math.MaxUint32, 7, math.MaxUint32<<32 | 7},
	}
	for _, tt := range tests {
		if got := diffIno(tt.layer, tt.entry); got != tt.want {
			t.Errorf("diffIno(%d, %d) = %#x, want %#x", tt.layer, tt.entry, got, tt.want)
		}
	}
}

// TestInodeSpaces checks that the two spaces never meet: ALS numbers stay
// below 2^32 and avoid the root; diff numbers of different layers or
// entries differ and are at least 2^32 (layer IDs are never 0).
func TestInodeSpaces(t *testing.T) {
	seen := map[uint64]string{rootIno: "root"}
	var c inoCounter
	for range 1000 {
		ino := c.next()
		if ino >= 1<<32 {
			t.Fatalf("ALS inode %#x has upper bits", ino)
		}
		if prev, dup := seen[ino]; dup {
			t.Fatalf("ALS inode %d handed out twice (first: %s)", ino, prev)
		}
		seen[ino] = "als"
	}
	for layer := uint32(1); layer <= 20; layer++ {
		for entry := uint32(1); entry <= 50; entry++ {
			ino := diffIno(layer, entry)
			if prev, dup := seen[ino]; dup {
				t.Fatalf("diffIno(%d, %d) = %d collides with %s", layer, entry, ino, prev)
			}
			seen[ino] = "diff"
		}
	}
}

func TestInoCounterWraps(t *testing.T) {
	var c inoCounter
	c.last.Store(math.MaxUint32 - 1)
	got := []uint64{c.next(), c.next(), c.next()}
	want := []uint64{math.MaxUint32, 2, 3} // 0 and the root's 1 are skipped
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("next() after wrap = %v, want %v", got, want)
		}
	}
}
