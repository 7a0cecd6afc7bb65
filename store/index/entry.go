// SPDX-License-Identifier: Apache-2.0

package index

import (
	"sort"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Type is the kind of a file in a layer. Hard links are not a type: a hard
// link name resolves to the Entry of its target.
type Type uint8

// The file types a layer can hold.
const (
	TypeDir Type = iota + 1
	TypeReg
	TypeSymlink
	TypeChar
	TypeBlock
	TypeFifo
)

var typeNames = [...]string{"invalid", "dir", "reg", "symlink", "char", "block", "fifo"}

// String returns the TOC spelling of t ("dir", "reg", ...).
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "invalid"
}

// ParseType returns the Type the eStargz and zstd:chunked TOCs spell s
// ("dir", "reg", "symlink", "char", "block", "fifo"). Hard links and chunks
// are entries of their own kind, not types.
func ParseType(s string) (Type, bool) {
	for t := TypeDir; t <= TypeFifo; t++ {
		if typeNames[t] == s {
			return t, true
		}
	}
	return 0, false
}

// Chunk is one independently decompressible and verifiable piece of a
// regular file's content.
type Chunk struct {
	// Offset is the position of the chunk's first byte in the file.
	Offset int64
	// Size is the chunk's uncompressed length, > 0.
	Size int64
	// CompressedOffset and CompressedEnd delimit, in the blob, the
	// compressed region (a gzip member or zstd frame) to decompress from.
	CompressedOffset, CompressedEnd int64
	// InnerOffset is the number of decompressed bytes to skip before the
	// chunk starts (eStargz small-file packing puts several chunks in one
	// gzip member).
	InnerOffset int64
	// Digest is the digest of the chunk's uncompressed bytes. It is empty
	// only when Zero is set.
	Digest digest.Digest
	// Zero marks a run of zero bytes that is served without fetching.
	Zero bool
}

// End returns the offset just past the chunk in the file.
func (c Chunk) End() int64 { return c.Offset + c.Size }

// Entry is one file of a layer. Entries are shared by all their names (hard
// links) and must not be modified.
type Entry struct {
	// ID is unique within the index and stable for a given TOC: the root is
	// 1, and the others are numbered in TOC order. It is meant for inode
	// numbers.
	ID uint32
	// Name is the first name the entry got in the TOC; the root is "".
	Name string
	Type Type
	// Mode holds the permission bits and setuid, setgid and sticky (07777).
	Mode                uint32
	UID, GID            int
	UserName, GroupName string
	// Size is the content length of a regular file, else 0.
	Size    int64
	ModTime time.Time
	// LinkName is a symlink's target, verbatim. It is data, never followed.
	LinkName           string
	DevMajor, DevMinor uint32
	// Xattrs are the extended attributes, decoded.
	Xattrs map[string][]byte
	// Digest is the digest of a regular file's whole content, when known.
	Digest digest.Digest
	// NumLink is the link count: the number of names of a non-directory, or
	// 2 plus the number of subdirectories of a directory.
	NumLink int
	// Chunks cover [0, Size) of a regular file, ordered by Offset.
	Chunks []Chunk
}

// ChunkAt returns the chunk of e that holds byte off of its content.
func (e *Entry) ChunkAt(off int64) (Chunk, bool) {
	if off < 0 || off >= e.Size {
		return Chunk{}, false
	}
	i := sort.Search(len(e.Chunks), func(i int) bool { return e.Chunks[i].End() > off })
	if i == len(e.Chunks) {
		return Chunk{}, false
	}
	return e.Chunks[i], true
}

// Dirent is one name in a directory.
type Dirent struct {
	// Name is the base name in the directory.
	Name  string
	Entry *Entry
}
