// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"fmt"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
)

// kind is the namespace of an entry. The two kinds live in two
// directories, so that no name of one can ever meet a name of the other.
type kind uint8

const (
	// kindContent: filed under the digest of its bytes, in content/.
	kindContent kind = iota + 1
	// kindRecord: filed under a name the caller makes up, in records/.
	kindRecord
)

// dirs are the directories of the kinds under the cache root.
var dirs = [...]string{kindContent: "content", kindRecord: "records"}

// Key names a cache entry and says what its bytes must be. Make one with
// Content or Record (and Sized); the zero Key names nothing, and every
// method refuses it. A Key is a small value: compare and copy it freely.
//
// Two keys name the same entry when they have the same kind and name;
// what they say about the bytes (the digest they must hash to, their
// size) is what the reader expects of that entry, and an entry that is
// not what a reader expects is a miss for that reader (see Sized).
type Key struct {
	kind kind
	name digest.Digest
	want digest.Digest // what the bytes must hash to; "" for an unchecked record
	size int64         // the bytes' length; -1: not said
}

// Content returns the key of the entry whose bytes hash to dg: a chunk, a
// blob, a manifest, a config. The cache checks the bytes against dg at
// commit and before their first read in the process.
func Content(dg digest.Digest) Key {
	return Key{kind: kindContent, name: dg, want: dg, size: -1}
}

// Record returns the key of an entry filed under name, a digest the caller
// derives from what the entry is about (a layer's TOC ranges, a file's
// whole content), not from its bytes. When want is not empty the bytes
// must hash to want, and the cache checks them as it checks content (a
// whole-file entry, which must hash to the file digest of its TOC); an
// empty want is an unchecked record, whose reader verifies what it reads
// (the TOC ranges, verified by the TOC digest on every parse).
func Record(name, want digest.Digest) Key {
	return Key{kind: kindRecord, name: name, want: want, size: -1}
}

// Sized returns k for bytes of exactly n bytes. A writer of a sized key
// makes room for n bytes when it starts and refuses any other length at
// Commit. A reader of a sized key finds only an entry of n bytes: one of
// another length is a miss for it, left in place (it is what its own
// digest says; the reader's source, a TOC, disagrees about its size).
func (k Key) Sized(n int64) Key {
	k.size = max(n, -1)
	return k
}

// String returns the key's kind and name, as errors show it.
func (k Key) String() string {
	switch k.kind {
	case kindContent:
		return "content " + k.name.String()
	case kindRecord:
		return "record " + k.name.String()
	}
	return "no key"
}

// entryID is what names an entry on disk and in the cache's maps.
type entryID struct {
	kind kind
	name digest.Digest
}

func (k Key) id() entryID { return entryID{k.kind, k.name} }

func (id entryID) String() string { return Key{kind: id.kind, name: id.name}.String() }

// path is where the entry id lives: <root>/<kind's dir>/<algo>/<first two
// hex>/<hex>. The name is validated first (an algorithm Go knows, hex of
// its length), so no key can name a path outside its kind's directory.
func (d *Dir) path(id entryID) (string, error) {
	if id.kind != kindContent && id.kind != kindRecord {
		return "", fmt.Errorf("cache key %q: no kind", id.name)
	}
	if err := id.name.Validate(); err != nil {
		return "", fmt.Errorf("cache key %s: %w", id, err)
	}
	hex := id.name.Encoded()
	return filepath.Join(d.root, dirs[id.kind], string(id.name.Algorithm()), hex[:2], hex), nil
}
