// SPDX-License-Identifier: Apache-2.0

package index

import (
	"path"
	"sort"
	"strings"
)

// Index answers lookups over one layer's entries. It is immutable and safe
// for concurrent use.
type Index struct {
	byName   map[string]*Entry
	children map[*Entry][]Dirent // sorted by name
	entries  []*Entry            // by ID-1
}

// Root returns the layer's root directory.
func (ix *Index) Root() *Entry { return ix.entries[0] }

// Lookup returns the entry for a path in any spelling ("a/b", "/a/b/",
// "./a/b"); hard link names return their target.
func (ix *Index) Lookup(name string) (*Entry, bool) {
	e, ok := ix.byName[strings.TrimPrefix(path.Clean("/"+name), "/")]
	return e, ok
}

// Children returns the names in directory dir, sorted by name. The slice
// is shared: do not modify it.
func (ix *Index) Children(dir *Entry) []Dirent { return ix.children[dir] }

// Child returns the entry named name in directory dir.
func (ix *Index) Child(dir *Entry, name string) (*Entry, bool) {
	kids := ix.children[dir]
	i := sort.Search(len(kids), func(i int) bool { return kids[i].Name >= name })
	if i < len(kids) && kids[i].Name == name {
		return kids[i].Entry, true
	}
	return nil, false
}

// Entry returns the entry with the given ID, or nil.
func (ix *Index) Entry(id uint32) *Entry {
	if id == 0 || int(id) > len(ix.entries) {
		return nil
	}
	return ix.entries[id-1]
}

// Entries returns every entry once (hard links once), in ID order. The
// slice is shared: do not modify it.
func (ix *Index) Entries() []*Entry { return ix.entries }

// Len returns the number of distinct entries, the root included.
func (ix *Index) Len() int { return len(ix.entries) }
