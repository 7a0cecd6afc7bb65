// SPDX-License-Identifier: Apache-2.0

package index

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// ErrInvalid is wrapped by every error about a malformed table of contents.
var ErrInvalid = errors.New("invalid table of contents")

// Limits are what a format reader knows about one layer, on top of the
// hard caps (caps.go) that every Builder applies. The zero value adds
// nothing to the caps.
type Limits struct {
	// BlobEnd is the blob offset that no chunk's compressed range may pass:
	// where the TOC (or footer) region starts, at most the blob size.
	// 0 means no limit, for tests; format readers always set it.
	BlobEnd int64
	// MaxEntries bounds the number of entries and hard links, below
	// MaxEntries; format readers tie it to the TOC size. 0 means
	// MaxEntries.
	MaxEntries int
	// MaxInflateRatio, when > 0, bounds how many decompressed bytes a
	// chunk may claim per compressed byte: InnerOffset+Size <= ratio *
	// (CompressedEnd-CompressedOffset). Deflate cannot exceed about 1032;
	// zstd has no such bound, so its reader leaves this 0.
	MaxInflateRatio int64
	// IgnoreOtherSizes says what a size on a TOC entry other than a
	// regular file means (AddTOC). false: the TOC is malformed; eStargz
	// writers give regular files only a size. true: nothing, and it is
	// dropped; containers/storage writes every tar header's size into a
	// zstd:chunked TOC, and tar ignores the size of header-only entries.
	IgnoreOtherSizes bool
}

// Builder collects entries in TOC order and builds an Index. The zero value
// is not usable; use NewBuilder. A Builder is not safe for concurrent use.
type Builder struct {
	lim      Limits
	byName   map[string]*Entry
	explicit map[*Entry]bool // entries the TOC named, as opposed to implicit parents
	entries  []*Entry
	links    []link

	// The last modtime AddTOC parsed: entries of one layer mostly share
	// a few.
	lastModTime       string
	lastModTimeParsed time.Time
}

type link struct{ name, target string }

// NewBuilder returns a Builder holding only the root directory.
func NewBuilder(lim Limits) *Builder {
	if lim.MaxEntries <= 0 || lim.MaxEntries > MaxEntries {
		lim.MaxEntries = MaxEntries
	}
	root := &Entry{ID: 1, Type: TypeDir, Mode: 0o755}
	return &Builder{
		lim:      lim,
		byName:   map[string]*Entry{"": root},
		explicit: map[*Entry]bool{},
		entries:  []*Entry{root},
	}
}

// Clean normalises a TOC name to a relative slash path ("" for the root).
// A name that would leave the root ("../x", "a/../../x") is an error.
func Clean(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: name %q contains NUL", ErrInvalid, name)
	}
	c := path.Clean(strings.TrimLeft(name, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: name %q escapes the layer root", ErrInvalid, name)
	}
	if c == "." {
		c = ""
	}
	return c, nil
}

// Add adds a file that is not a hard link. e.Name is cleaned; e.ID,
// e.NumLink and e.Chunks are set by the builder. A directory may refine an
// implicit one made for an earlier child; any other repeated name is an
// error.
func (b *Builder) Add(e Entry) error {
	if err := CheckNames(e.Name, e.LinkName); err != nil {
		return err
	}
	name, err := Clean(e.Name)
	if err != nil {
		return err
	}
	if err := b.checkEntry(name, &e); err != nil {
		return err
	}
	if old, ok := b.byName[name]; ok {
		return b.refine(old, name, e)
	}
	if _, err := b.parent(name); err != nil {
		return err
	}
	if err := b.checkFull(); err != nil {
		return err
	}
	e.Name, e.Chunks, e.NumLink = name, nil, 0
	ne := b.newEntry(e)
	b.byName[name] = ne
	b.explicit[ne] = true
	return nil
}

func (b *Builder) checkEntry(name string, e *Entry) error {
	switch {
	case e.Type < TypeDir || e.Type > TypeFifo:
		return fmt.Errorf("%w: %q has unknown type %d", ErrInvalid, name, e.Type)
	case e.Size < 0 || (e.Type != TypeReg && e.Size != 0):
		return fmt.Errorf("%w: %q has size %d", ErrInvalid, name, e.Size)
	case name == "" && e.Type != TypeDir:
		return fmt.Errorf("%w: the root is a %s", ErrInvalid, e.Type)
	}
	if err := checkEntryCaps(e); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrInvalid, name, err)
	}
	e.Mode &= 0o7777 // tar modes may carry type bits; keep permissions only
	return nil
}

// refine merges an explicit directory entry into an implicit one.
func (b *Builder) refine(old *Entry, name string, e Entry) error {
	if old == nil || b.explicit[old] || old.Type != TypeDir || e.Type != TypeDir {
		return fmt.Errorf("%w: duplicate entry %q", ErrInvalid, name)
	}
	id := old.ID
	e.Name, e.Chunks, e.NumLink = name, nil, 0
	*old = e
	old.ID = id
	b.explicit[old] = true
	return nil
}

// parent returns the directory holding name, creating implicit ones.
//
// It walks up to the nearest existing ancestor without recursion and with
// a constant-time step, so a hostile name thousands of levels deep costs
// neither stack nor quadratic time in path.Dir.
func (b *Builder) parent(name string) (*Entry, error) {
	var missing []string
	dir := parentDir(name)
	p, ok := b.byName[dir]
	for ; !ok; p, ok = b.byName[dir] {
		missing = append(missing, dir)
		dir = parentDir(dir)
	}
	if p == nil || p.Type != TypeDir {
		return nil, fmt.Errorf("%w: parent of %q is not a directory", ErrInvalid, name)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := b.checkFull(); err != nil {
			return nil, err
		}
		p = b.newEntry(Entry{Name: missing[i], Type: TypeDir, Mode: 0o755})
		b.byName[missing[i]] = p
	}
	return p, nil
}

// parentDir is path.Dir for a clean name, with "" for the root.
func parentDir(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return ""
}

// checkFull refuses one more entry past Limits.MaxEntries. Checking as
// entries come, not only in Build, bounds memory while a hostile TOC is
// still being read (one long name can imply thousands of directories).
func (b *Builder) checkFull() error {
	if n := len(b.entries) + len(b.links); n >= b.lim.MaxEntries {
		return fmt.Errorf("%w: more than %d entries", ErrInvalid, b.lim.MaxEntries)
	}
	return nil
}

func (b *Builder) newEntry(e Entry) *Entry {
	e.ID = uint32(len(b.entries) + 1)
	ne := &e
	b.entries = append(b.entries, ne)
	return ne
}

// AddHardlink records that name is another name of target. Targets are
// resolved by Build, so a link may name a target that is itself a link.
func (b *Builder) AddHardlink(name, target string) error {
	if err := CheckNames(name, target); err != nil {
		return err
	}
	n, err := Clean(name)
	if err != nil {
		return err
	}
	t, err := Clean(target)
	if err != nil {
		return err
	}
	if n == "" {
		return fmt.Errorf("%w: hard link %q names the root", ErrInvalid, name)
	}
	if _, ok := b.byName[n]; ok {
		return fmt.Errorf("%w: duplicate entry %q", ErrInvalid, n)
	}
	if _, err := b.parent(n); err != nil {
		return err
	}
	if err := b.checkFull(); err != nil {
		return err
	}
	b.links = append(b.links, link{n, t})
	b.byName[n] = nil // reserve the name; resolved in Build
	return nil
}

// AddChunk appends a chunk to the content of regular file name. Chunks must
// be added in file order.
func (b *Builder) AddChunk(name string, c Chunk) error {
	if err := CheckNames(name, ""); err != nil {
		return err
	}
	n, err := Clean(name)
	if err != nil {
		return err
	}
	e := b.byName[n]
	if e == nil || e.Type != TypeReg {
		return fmt.Errorf("%w: chunk for %q, which is not a regular file", ErrInvalid, n)
	}
	if err := b.checkChunk(n, e, c); err != nil {
		return err
	}
	e.Chunks = append(e.Chunks, c)
	return nil
}

// checkChunk checks that c continues file e and obeys the caps and the
// limits. It is the one check of a chunk's sizes and offsets.
func (b *Builder) checkChunk(name string, e *Entry, c Chunk) error {
	want := int64(0)
	if k := len(e.Chunks); k > 0 {
		want = e.Chunks[k-1].End()
	}
	switch {
	case c.Offset != want:
		return fmt.Errorf("%w: %q: chunk at %d, want %d", ErrInvalid, name, c.Offset, want)
	case c.Size > e.Size-c.Offset:
		return fmt.Errorf("%w: %q: chunk at %d has size %d (file size %d)", ErrInvalid, name, c.Offset, c.Size, e.Size)
	}
	if err := checkChunkCaps(b.lim, c); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrInvalid, name, err)
	}
	if c.Zero {
		return nil
	}
	if c.Digest == "" {
		return fmt.Errorf("%w: %q: chunk at %d has no digest", ErrInvalid, name, c.Offset)
	}
	if err := validateDigest(c.Digest); err != nil {
		return fmt.Errorf("%w: %q: chunk at %d: %v", ErrInvalid, name, c.Offset, err)
	}
	return nil
}

// validateDigest is digest.Validate with a fast path for the sha256
// digests of nearly every chunk: Validate runs a regexp, which was a large
// part of indexing a big TOC.
func validateDigest(d digest.Digest) error {
	if hex, ok := strings.CutPrefix(string(d), "sha256:"); ok && len(hex) == 64 {
		lower := true
		for i := 0; i < len(hex) && lower; i++ {
			c := hex[i]
			lower = '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
		}
		if lower {
			return nil
		}
	}
	return d.Validate()
}

// checkEvery is how many items the long loops of Build handle between
// looks at their context.
const checkEvery = 4096

// Build resolves hard links, checks that every file's chunks cover it, and
// returns the Index. It stops with ctx's error when ctx is done; its time
// is linear in the entries and links, plus sorting each directory. The
// Builder must not be used afterwards.
func (b *Builder) Build(ctx context.Context) (*Index, error) {
	if len(b.entries)+len(b.links) > b.lim.MaxEntries {
		return nil, fmt.Errorf("%w: %d entries, more than %d", ErrInvalid, len(b.entries)+len(b.links), b.lim.MaxEntries)
	}
	if err := b.resolveLinks(ctx); err != nil {
		return nil, err
	}
	for i, e := range b.entries {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if e.Type == TypeReg && chunkedSize(e) != e.Size {
			return nil, fmt.Errorf("%w: %q: chunks cover %d of %d bytes", ErrInvalid, e.Name, chunkedSize(e), e.Size)
		}
	}
	kids, err := b.childLists(ctx)
	if err != nil {
		return nil, err
	}
	return &Index{byName: b.byName, children: kids, entries: b.entries}, nil
}

func chunkedSize(e *Entry) int64 {
	if len(e.Chunks) == 0 {
		return 0
	}
	return e.Chunks[len(e.Chunks)-1].End()
}

// resolveLinks points every link name at its final target. Each link is
// walked once: following a chain of links to a file resolves every link
// on it, so a later link into the chain stops at the first resolved one.
// A chain that comes back to a link on it is a loop.
func (b *Builder) resolveLinks(ctx context.Context) error {
	target := make(map[string]string, len(b.links))
	for _, l := range b.links {
		target[l.name] = l.target
	}
	onChain := make(map[string]bool)
	var chain []string
	for i, l := range b.links {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		chain = chain[:0]
		n := l.name
		for b.byName[n] == nil {
			next, isLink := target[n]
			if _, known := b.byName[n]; !known || !isLink {
				return fmt.Errorf("%w: hard link %q to missing %q", ErrInvalid, l.name, n)
			}
			if onChain[n] {
				return fmt.Errorf("%w: hard link loop at %q", ErrInvalid, n)
			}
			onChain[n] = true
			chain = append(chain, n)
			n = next
		}
		e := b.byName[n]
		if e.Type == TypeDir {
			return fmt.Errorf("%w: hard link %q to directory %q", ErrInvalid, l.name, n)
		}
		for _, c := range chain {
			b.byName[c] = e
			delete(onChain, c)
		}
	}
	return nil
}

// childLists builds the sorted directory listings and the link counts.
func (b *Builder) childLists(ctx context.Context) (map[*Entry][]Dirent, error) {
	kids := make(map[*Entry][]Dirent)
	i := 0
	for name, e := range b.byName {
		if i++; i%checkEvery == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		e.NumLink++
		if name == "" {
			continue
		}
		dir := parentDir(name)
		p := b.byName[dir]
		kids[p] = append(kids[p], Dirent{Name: name[len(dir)+min(len(dir), 1):], Entry: e})
		if e.Type == TypeDir {
			p.NumLink++
		}
	}
	for i, e := range b.entries {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if e.Type == TypeDir {
			e.NumLink++ // "." and the name in the parent
		}
		sort.Slice(kids[e], func(i, j int) bool { return kids[e][i].Name < kids[e][j].Name })
	}
	return kids, nil
}
