// SPDX-License-Identifier: Apache-2.0

package elfdeps

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

func TestReadSynthetic(t *testing.T) {
	needed := []string{"libm.so.6", "libz.so.1", "libc.so.6"}
	for _, tc := range []struct {
		name  string
		is64  bool
		order binary.ByteOrder
	}{
		{"elf64 little", true, binary.LittleEndian},
		{"elf64 big", true, binary.BigEndian},
		{"elf32 little", false, binary.LittleEndian},
		{"elf32 big", false, binary.BigEndian},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := testutil.ELF(tc.is64, tc.order, "/lib64/ld-linux-x86-64.so.2", needed, "$ORIGIN/../lib::/opt/x")
			d, err := Read(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if d.Interp != "/lib64/ld-linux-x86-64.so.2" || !slices.Equal(d.Needed, needed) ||
				!slices.Equal(d.RunPath, []string{"$ORIGIN/../lib", "/opt/x"}) {
				t.Fatalf("got %+v", d)
			}
			// debug/elf agrees on the needed list.
			f, err := elf.NewFile(bytes.NewReader(b))
			if err == nil {
				if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 && !slices.Equal(libs, needed) {
					t.Errorf("debug/elf says %v", libs)
				}
			}
		})
	}
}

// TestReadHostBinaries compares with debug/elf on the machine's own
// dynamically linked programs, which have section headers.
func TestReadHostBinaries(t *testing.T) {
	n := 0
	for _, p := range []string{"/bin/ls", "/bin/sh", "/usr/bin/env", "/usr/bin/python3", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/bin/busybox"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		n++
		d, err := Read(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: debug/elf: %v", p, err)
		}
		libs, _ := f.ImportedLibraries()
		if !slices.Equal(d.Needed, libs) {
			t.Errorf("%s: needed %v, debug/elf %v", p, d.Needed, libs)
		}
		var interp string
		for _, pr := range f.Progs {
			if pr.Type == elf.PT_INTERP {
				data, _ := io.ReadAll(pr.Open())
				interp = strings.TrimRight(string(data), "\x00")
			}
		}
		if d.Machine != f.Machine {
			t.Errorf("%s: machine %v, debug/elf %v", p, d.Machine, f.Machine)
		}
		if d.Interp != interp {
			t.Errorf("%s: interp %q, debug/elf %q", p, d.Interp, interp)
		}
	}
	if n == 0 {
		t.Skip("no host ELF binaries found")
	}
}

// partial serves only the first n bytes of b, as a layer serves only
// the chunks it has.
type partial struct {
	b []byte
	n int
}

var errUnavailable = errors.New("not available")

func (p partial) ReadAt(q []byte, off int64) (int, error) {
	if off >= int64(p.n) {
		return 0, errUnavailable
	}
	k := copy(q, p.b[off:p.n])
	if k < len(q) {
		return k, errUnavailable
	}
	return k, nil
}

func TestReadPartialNeverWrong(t *testing.T) {
	b := testutil.ELF(true, binary.LittleEndian, "/lib/ld.so", []string{"liba.so", "libb.so"}, "")
	full, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n++ {
		d, err := Read(partial{b, n})
		if errors.Is(err, ErrDynamic) {
			// Only the dynamic segment was missing: the interpreter is right.
			if d.Interp != full.Interp || len(d.Needed) != 0 {
				t.Fatalf("with %d of %d bytes: %+v, %v", n, len(b), d, err)
			}
			continue
		}
		if err != nil {
			continue
		}
		// Success with part of the file must give the whole answer.
		if d.Interp != full.Interp || !slices.Equal(d.Needed, full.Needed) {
			t.Fatalf("with %d of %d bytes: %+v, want %+v", n, len(b), d, full)
		}
	}
}

func TestReadRefuses(t *testing.T) {
	good := testutil.ELF(true, binary.LittleEndian, "/lib/ld.so", []string{"liba.so"}, "")
	for _, tc := range []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"script", func([]byte) []byte { return []byte("#!/bin/sh\necho hi\n" + strings.Repeat(" ", 64)) }},
		{"bad class", func(b []byte) []byte { b[elf.EI_CLASS] = 9; return b }},
		{"bad byte order", func(b []byte) []byte { b[elf.EI_DATA] = 0; return b }},
		{"too many program headers", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[56:], 60000); return b }},
		{"program header size too small", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[54:], 8); return b }},
		{"program headers beyond the file", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[32:], 1<<50); return b }},
		{"interp without NUL", func(b []byte) []byte {
			off := binary.LittleEndian.Uint64(b[64+8:])
			for i := off; i < uint64(len(b)); i++ {
				b[i] = 'x'
			}
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(slices.Clone(good))
			if _, err := Read(bytes.NewReader(b)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := Read(bytes.NewReader([]byte("not elf at all, but long enough to hold an ELF header: 0123456789"))); !errors.Is(err, ErrNotELF) {
		t.Fatalf("err = %v, want ErrNotELF", err)
	}
}

func TestStaticHasNoDeps(t *testing.T) {
	b := testutil.ELF(true, binary.LittleEndian, "x", nil, "")
	// Turn PT_INTERP and PT_DYNAMIC into PT_NULL: a static executable.
	binary.LittleEndian.PutUint32(b[64:], uint32(elf.PT_NULL))
	binary.LittleEndian.PutUint32(b[64+2*56:], uint32(elf.PT_NULL))
	d, err := Read(bytes.NewReader(b))
	if err != nil || d.Interp != "" || len(d.Needed) != 0 {
		t.Fatalf("got %+v, %v", d, err)
	}
}
