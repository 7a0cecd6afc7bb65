// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// ELF builds a small ELF file for machine x86-64: a PT_INTERP, one PT_LOAD mapping the
// whole file at vaddr base, and a PT_DYNAMIC with the given needed names
// and run path (if not empty).
func ELF(is64 bool, order binary.ByteOrder, interp string, needed []string, runpath string) []byte {
	const base = 0x400000
	hdrSize, phSize, dynEnt := 52, 32, 8
	if is64 {
		hdrSize, phSize, dynEnt = 64, 56, 16
	}
	nph := 3
	phoff := hdrSize
	interpOff := phoff + nph*phSize
	strOff := interpOff + len(interp) + 1
	var strs bytes.Buffer
	strs.WriteByte(0)
	var idx []int
	for _, n := range needed {
		idx = append(idx, strs.Len())
		strs.WriteString(n)
		strs.WriteByte(0)
	}
	rpIdx := strs.Len()
	strs.WriteString(runpath)
	strs.WriteByte(0)
	dynOff := strOff + strs.Len()
	type dyn struct{ tag, val uint64 }
	var dyns []dyn
	for _, i := range idx {
		dyns = append(dyns, dyn{uint64(elf.DT_NEEDED), uint64(i)})
	}
	if runpath != "" {
		dyns = append(dyns, dyn{uint64(elf.DT_RUNPATH), uint64(rpIdx)})
	}
	dyns = append(dyns, dyn{uint64(elf.DT_STRTAB), uint64(base + strOff)}, dyn{uint64(elf.DT_STRSZ), uint64(strs.Len())}, dyn{})
	total := dynOff + len(dyns)*dynEnt
	b := make([]byte, total)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS] = byte(elf.ELFCLASS32)
	if is64 {
		b[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	}
	b[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	if order == binary.BigEndian {
		b[elf.EI_DATA] = byte(elf.ELFDATA2MSB)
	}
	b[elf.EI_VERSION] = 1
	order.PutUint16(b[18:], uint16(elf.EM_X86_64))
	put := func(off int, v uint64, size int) {
		switch size {
		case 2:
			order.PutUint16(b[off:], uint16(v))
		case 4:
			order.PutUint32(b[off:], uint32(v))
		case 8:
			order.PutUint64(b[off:], v)
		}
	}
	if is64 {
		put(32, uint64(phoff), 8)
		put(54, uint64(phSize), 2)
		put(56, uint64(nph), 2)
	} else {
		put(28, uint64(phoff), 4)
		put(42, uint64(phSize), 2)
		put(44, uint64(nph), 2)
	}
	ph := func(i int, typ elf.ProgType, off, vaddr, size int) {
		p := phoff + i*phSize
		if is64 {
			put(p, uint64(typ), 4)
			put(p+8, uint64(off), 8)
			put(p+16, uint64(vaddr), 8)
			put(p+32, uint64(size), 8)
			put(p+40, uint64(size), 8)
			return
		}
		put(p, uint64(typ), 4)
		put(p+4, uint64(off), 4)
		put(p+8, uint64(vaddr), 4)
		put(p+16, uint64(size), 4)
		put(p+20, uint64(size), 4)
	}
	ph(0, elf.PT_INTERP, interpOff, base+interpOff, len(interp)+1)
	ph(1, elf.PT_LOAD, 0, base, total)
	ph(2, elf.PT_DYNAMIC, dynOff, base+dynOff, len(dyns)*dynEnt)
	copy(b[interpOff:], interp)
	copy(b[strOff:], strs.Bytes())
	for i, d := range dyns {
		p := dynOff + i*dynEnt
		if is64 {
			put(p, d.tag, 8)
			put(p+8, d.val, 8)
		} else {
			put(p, d.tag, 4)
			put(p+4, d.val, 4)
		}
	}
	return b
}
