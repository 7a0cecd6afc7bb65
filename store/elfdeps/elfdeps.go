// SPDX-License-Identifier: Apache-2.0

// Package elfdeps reads what the dynamic loader will open for an ELF
// executable or shared library: its program interpreter (PT_INTERP, the
// loader itself), the libraries it needs (DT_NEEDED) and where it asks
// for them to be searched (DT_RUNPATH, DT_RPATH).
//
// The store uses it to guess a container's next reads: once a read has
// fetched the head of an ELF file, the loader is about to open exactly
// these files, so they can be fetched together in one request instead of
// one round trip each.
//
// Only the program headers and the dynamic segment are read, never the
// section headers (which sit at the end of the file, often in a chunk
// that has not been fetched). The input is untrusted: every count, offset
// and string is bounded, and the reader passed in decides what is
// available (a read it cannot serve fails Read, it never blocks here).
package elfdeps

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrNotELF is returned for input that does not start with an ELF header
// this package reads (32- or 64-bit, either byte order).
var ErrNotELF = errors.New("not an ELF file")

// Deps is what the loader opens for one ELF file. Names are verbatim.
type Deps struct {
	Machine elf.Machine // e_machine: which multiarch library directories apply
	Interp  string      // absolute path of the program interpreter, or ""
	Needed  []string    // DT_NEEDED, in order
	RunPath []string    // DT_RUNPATH, or DT_RPATH when there is no RUNPATH, split at ':'
}

// Bounds on untrusted input.
const (
	maxProgHeaders = 1024
	maxDynEntries  = 4096
	maxString      = 4096
	maxNeeded      = 256
)

// IsELF reports whether head starts with the ELF magic.
func IsELF(head []byte) bool { return bytes.HasPrefix(head, []byte(elf.ELFMAG)) }

// ErrDynamic wraps the error of a file whose dynamic segment could not be
// read; Read then still returns the machine and the interpreter, which
// come first in the file (the dynamic segment is often megabytes later).
var ErrDynamic = errors.New("dynamic segment")

// Read parses the ELF file r. It reads the ELF header, the program
// headers, the interpreter path and the dynamic segment and its strings.
func Read(r io.ReaderAt) (Deps, error) {
	h, err := readHeader(r)
	if err != nil {
		return Deps{}, err
	}
	progs, err := h.programs(r)
	if err != nil {
		return Deps{}, err
	}
	d := Deps{Machine: h.machine}
	var dyn *prog
	for i := range progs {
		switch elf.ProgType(progs[i].typ) {
		case elf.PT_INTERP:
			if d.Interp, err = readString(r, int64(progs[i].off), progs[i].filesz); err != nil {
				return Deps{}, fmt.Errorf("interpreter: %w", err)
			}
		case elf.PT_DYNAMIC:
			if dyn == nil {
				dyn = &progs[i]
			}
		}
	}
	if dyn == nil {
		return d, nil // static
	}
	if err := h.readDynamic(r, *dyn, progs, &d); err != nil {
		return Deps{Machine: d.Machine, Interp: d.Interp}, fmt.Errorf("%w: %w", ErrDynamic, err)
	}
	return d, nil
}

// header is the part of the ELF header this package needs.
type header struct {
	machine elf.Machine
	is64    bool
	order   binary.ByteOrder
	phoff   uint64
	phent   uint16
	phnum   uint16
}

func readHeader(r io.ReaderAt) (header, error) {
	var id [64]byte
	n, err := r.ReadAt(id[:], 0)
	if n < 52 { // the 32-bit header's size
		if err == nil || errors.Is(err, io.EOF) {
			err = ErrNotELF
		}
		return header{}, err
	}
	if !IsELF(id[:]) {
		return header{}, ErrNotELF
	}
	var h header
	switch elf.Data(id[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		h.order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		h.order = binary.BigEndian
	default:
		return header{}, fmt.Errorf("%w: byte order %d", ErrNotELF, id[elf.EI_DATA])
	}
	switch elf.Class(id[elf.EI_CLASS]) {
	case elf.ELFCLASS64:
		if n < 64 {
			return header{}, fmt.Errorf("%w: short 64-bit header", ErrNotELF)
		}
		h.is64 = true
		h.phoff = h.order.Uint64(id[32:])
		h.phent = h.order.Uint16(id[54:])
		h.phnum = h.order.Uint16(id[56:])
	case elf.ELFCLASS32:
		h.phoff = uint64(h.order.Uint32(id[28:]))
		h.phent = h.order.Uint16(id[42:])
		h.phnum = h.order.Uint16(id[44:])
	default:
		return header{}, fmt.Errorf("%w: class %d", ErrNotELF, id[elf.EI_CLASS])
	}
	h.machine = elf.Machine(h.order.Uint16(id[18:]))
	return h, nil
}

// prog is one program header.
type prog struct {
	typ           uint32
	off, vaddr    uint64
	filesz, memsz uint64
}

func (h header) progSize() int {
	if h.is64 {
		return 56
	}
	return 32
}

func (h header) programs(r io.ReaderAt) ([]prog, error) {
	size := h.progSize()
	if h.phnum == 0 {
		return nil, nil
	}
	if h.phnum > maxProgHeaders || int(h.phent) < size || h.phoff > 1<<40 {
		return nil, fmt.Errorf("program headers: %d of %d bytes at %d: out of bounds", h.phnum, h.phent, h.phoff)
	}
	buf := make([]byte, int(h.phnum)*int(h.phent))
	if _, err := r.ReadAt(buf, int64(h.phoff)); err != nil {
		return nil, fmt.Errorf("program headers: %w", err)
	}
	out := make([]prog, h.phnum)
	for i := range out {
		b := buf[i*int(h.phent):]
		if h.is64 {
			out[i] = prog{
				typ: h.order.Uint32(b), off: h.order.Uint64(b[8:]), vaddr: h.order.Uint64(b[16:]),
				filesz: h.order.Uint64(b[32:]), memsz: h.order.Uint64(b[40:]),
			}
			continue
		}
		out[i] = prog{
			typ: h.order.Uint32(b), off: uint64(h.order.Uint32(b[4:])), vaddr: uint64(h.order.Uint32(b[8:])),
			filesz: uint64(h.order.Uint32(b[16:])), memsz: uint64(h.order.Uint32(b[20:])),
		}
	}
	return out, nil
}

// readDynamic reads the dynamic entries and resolves the strings they
// point at through the string table, which DT_STRTAB gives as a virtual
// address: the PT_LOAD segment holding it maps it to a file offset.
func (h header) readDynamic(r io.ReaderAt, dyn prog, progs []prog, d *Deps) error {
	ent := uint64(16)
	if !h.is64 {
		ent = 8
	}
	count := min(dyn.filesz/ent, maxDynEntries)
	if count == 0 || dyn.off > 1<<40 {
		return nil
	}
	buf := make([]byte, count*ent)
	if _, err := r.ReadAt(buf, int64(dyn.off)); err != nil {
		return err
	}
	var needed []uint64
	var strtab, strsz, runpath, rpath uint64
	hasRunpath, hasRpath := false, false
	for i := uint64(0); i < count; i++ {
		tag, val := h.dynEntry(buf[i*ent:])
		switch elf.DynTag(tag) {
		case elf.DT_NULL:
			i = count
		case elf.DT_NEEDED:
			if len(needed) < maxNeeded {
				needed = append(needed, val)
			}
		case elf.DT_STRTAB:
			strtab = val
		case elf.DT_STRSZ:
			strsz = val
		case elf.DT_RUNPATH:
			runpath, hasRunpath = val, true
		case elf.DT_RPATH:
			rpath, hasRpath = val, true
		}
	}
	if len(needed) == 0 && !hasRunpath && !hasRpath {
		return nil
	}
	off, ok := fileOffset(progs, strtab)
	if !ok {
		return fmt.Errorf("string table at address %#x is in no loaded segment", strtab)
	}
	str := func(i uint64) (string, error) {
		limit := uint64(maxString)
		if strsz != 0 {
			if i >= strsz {
				return "", fmt.Errorf("string %d beyond the table's %d bytes", i, strsz)
			}
			limit = min(limit, strsz-i)
		}
		if i > 1<<40 {
			return "", fmt.Errorf("string %d: out of bounds", i)
		}
		return readString(r, int64(off+i), limit)
	}
	for _, i := range needed {
		s, err := str(i)
		if err != nil {
			return err
		}
		d.Needed = append(d.Needed, s)
	}
	if hasRpath && !hasRunpath {
		runpath, hasRunpath = rpath, true
	}
	if hasRunpath {
		s, err := str(runpath)
		if err != nil {
			return err
		}
		d.RunPath = splitPath(s)
	}
	return nil
}

func (h header) dynEntry(b []byte) (tag int64, val uint64) {
	if h.is64 {
		return int64(h.order.Uint64(b)), h.order.Uint64(b[8:])
	}
	return int64(int32(h.order.Uint32(b))), uint64(h.order.Uint32(b[4:]))
}

// fileOffset maps a virtual address to its offset in the file through the
// PT_LOAD segment whose file image holds it.
func fileOffset(progs []prog, addr uint64) (uint64, bool) {
	for _, p := range progs {
		if elf.ProgType(p.typ) == elf.PT_LOAD && addr >= p.vaddr && addr-p.vaddr < p.filesz && p.off <= 1<<40 {
			return p.off + (addr - p.vaddr), true
		}
	}
	return 0, false
}

// readString reads a NUL-terminated string of at most max bytes at off;
// the NUL must come within them.
func readString(r io.ReaderAt, off int64, max uint64) (string, error) {
	if off < 0 || off > 1<<40 {
		return "", fmt.Errorf("string at %d: out of bounds", off)
	}
	n := int(min(max, maxString))
	buf := make([]byte, n)
	k, err := r.ReadAt(buf, off)
	if i := bytes.IndexByte(buf[:k], 0); i >= 0 {
		return string(buf[:i]), nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("string at %d: no NUL within %d bytes", off, n)
	}
	return "", err
}

// splitPath splits a search path at ':', dropping empty elements.
func splitPath(s string) []string {
	var out []string
	for p := range bytes.SplitSeq([]byte(s), []byte(":")) {
		if len(p) > 0 {
			out = append(out, string(p))
		}
	}
	return out
}
