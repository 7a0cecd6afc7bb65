// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestPutNamedKeepsContentUnderAName(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1})
	key := digest.FromString("the name, not the content")
	if err := d.PutNamed(t.Context(), key, []byte("content")); err != nil {
		t.Fatalf("PutNamed() = %v", err)
	}
	d.Close()
	d2 := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1}) // survives a restart
	if got, err := d2.ReadAll(key); err != nil || string(got) != "content" {
		t.Fatalf("ReadAll() = %q, %v; want content", got, err)
	}
}

func TestPutColdStaysOutOfMemory(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 1 << 20})
	dg := digest.FromString("cold")
	if err := d.PutCold(t.Context(), dg, []byte("cold")); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.mem.get(dg); ok {
		t.Error("PutCold kept the entry in memory")
	}
	if !d.Contains(dg) || !d.Has(dg) {
		t.Error("PutCold entry not on disk")
	}
	hot := digest.FromString("hot")
	d.Remember(hot, []byte("hot"))
	if !d.Contains(hot) || d.Has(hot) {
		t.Errorf("Remember: Contains = %v, Has = %v; want in memory only", d.Contains(hot), d.Has(hot))
	}
}

func TestConcurrentPutsStayUnderTheLimit(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 100, MemorySize: -1})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			s := fmt.Sprintf("%02d", i) + strings.Repeat("x", 18)
			d.Put(t.Context(), digest.FromString(s), []byte(s))
		})
	}
	wg.Wait()
	if used, max := d.Usage(); used > max {
		t.Fatalf("Usage() = %d, over the limit %d", used, max)
	}
}
