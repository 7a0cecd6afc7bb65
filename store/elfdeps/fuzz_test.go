// SPDX-License-Identifier: Apache-2.0

package elfdeps

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// FuzzRead feeds arbitrary bytes to Read: it must not panic, allocate
// without bound or return names longer than its bounds.
func FuzzRead(f *testing.F) {
	f.Add(testutil.ELF(true, binary.LittleEndian, "/lib64/ld-linux-x86-64.so.2", []string{"libc.so.6"}, "$ORIGIN"))
	f.Add(testutil.ELF(false, binary.BigEndian, "/lib/ld.so.1", []string{"liba.so", "libb.so"}, ""))
	if b, err := os.ReadFile("/bin/true"); err == nil && len(b) > 4096 {
		f.Add(b[:4096])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(d.Interp) > maxString || len(d.Needed) > maxNeeded {
			t.Fatalf("out of bounds: %d, %d", len(d.Interp), len(d.Needed))
		}
		for _, n := range d.Needed {
			if len(n) > maxString {
				t.Fatalf("name of %d bytes", len(n))
			}
		}
	})
}
