// SPDX-License-Identifier: Apache-2.0

package store

import (
	"debug/elf"
	"errors"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stargz-store/stargz-store/store/elfdeps"
	"github.com/stargz-store/stargz-store/store/index"
)

// Speculative fetch. A layer without prioritized files (no prefetch
// landmark) does not say what a container reads first, so each file the
// start-up reads costs a round trip of its own, one after the other: on a
// 40 ms link the python3 start-up was a chain of 16. The store cuts that
// chain with two guesses, each fetched in one request while the container
// is busy elsewhere:
//
//   - start-up files: when the layer is first looked up, the files the
//     runtime and libc read before any program code runs (the user and
//     group databases, the local time zone; see Options.StartupFiles),
//     and the program of the image's default command (commandPaths).
//   - ELF dependencies: when a read has fetched the head of an ELF file,
//     the dynamic loader is about to open its interpreter, the loader's
//     cache and every DT_NEEDED library, searched as the loader searches
//     (RUNPATH, then the multiarch and standard directories). Those are
//     fetched at once, and their own dependencies when they arrive. With
//     glibc come the two small files it reads for a UTF-8 locale (the
//     C.UTF-8 character classes and the gconv module cache): Python
//     coerces the C locale to C.UTF-8, and images often set
//     LANG=C.UTF-8.
//
// A guess only costs bytes: its chunks are verified like any others, it
// runs at on-demand priority, and reads of its chunks join it instead of
// fetching again. Each file is guessed once per layer, and a layer's
// guesses stop at speculateBudget compressed bytes.

// speculateBudget bounds the compressed bytes a layer fetches on guesses.
const speculateBudget = 32 << 20

// speculation is a layer's guessing: whether it guesses, the bytes its
// guesses may still fetch, and the files and directories looked at.
type speculation struct {
	on   bool         // LayerOptions.Speculate
	left atomic.Int64 // compressed bytes guesses may still fetch

	// mu guards the fields below.
	mu     sync.Mutex
	looked map[uint32]bool // entries looked at for guesses
}

// firstLook reports whether e has not been looked at for guesses yet,
// and marks it.
func (s *speculation) firstLook(e *index.Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.looked[e.ID] {
		return false
	}
	s.looked[e.ID] = true
	return true
}

// unlook forgets that e was looked at: it is to be looked at again.
func (s *speculation) unlook(e *index.Entry) {
	s.mu.Lock()
	delete(s.looked, e.ID)
	s.mu.Unlock()
}

// spend takes n bytes from what guesses may fetch; it reports false when
// they are spent.
func (s *speculation) spend(n int64) bool { return s.left.Add(-n) >= 0 }

// Directory read-ahead. Interpreted programs read many small files of a
// few directories at start-up (python3 imports encodings/__init__, then
// aliases, then utf_8, each a round trip), and nothing names them ahead.
// So when a read fetches a small file, the store fetches in the same
// request the other small files of its directory, once per directory and
// only when they are few: a directory whose small files compress to more
// than dirBudget is not guessed at all.
const (
	smallFile = 64 << 10  // uncompressed size of a file the rule applies to
	dirBudget = 512 << 10 // compressed bytes of a directory's small files
)

// siblings returns the chunks of the small regular files next to r's
// file that the fetch of r should bring along, or nil. have lists what
// the fetch already holds.
func (l *Layer) siblings(r chunkRef, have []chunkRef) []chunkRef {
	if !l.spec.on || r.i != 0 || r.e.Size > smallFile {
		return nil
	}
	ix := l.Index()
	dir, ok := ix.Lookup(path.Dir(r.e.Name))
	if !ok || dir.Type != index.TypeDir || !l.spec.firstLook(dir) {
		return nil
	}
	seen := map[chunkKey]bool{}
	for _, x := range have {
		seen[x.key()] = true
	}
	var out []chunkRef
	var size int64
	for _, d := range ix.Children(dir) {
		e := d.Entry
		if e == r.e || e.Type != index.TypeReg || e.Size > smallFile {
			continue // r's own file: read-ahead decides
		}
		for i, c := range e.Chunks {
			x := chunkRef{e, i}
			if c.Zero || seen[x.key()] || l.has(x) {
				continue
			}
			seen[x.key()] = true
			if size += c.CompressedEnd - c.CompressedOffset; size > dirBudget {
				return nil
			}
			out = append(out, x)
		}
	}
	if len(out) == 0 || !l.spec.spend(size) {
		return nil
	}
	return out
}

// speculateELF looks at the chunks a fetch just verified for heads of
// ELF files and fetches what the loader will open for them.
func (l *Layer) speculateELF(refs []chunkRef, data [][]byte) {
	if !l.spec.on {
		return
	}
	var es []*index.Entry
	for i, r := range refs {
		if r.i != 0 || !elfdeps.IsELF(data[i]) || !l.spec.firstLook(r.e) {
			continue
		}
		d, err := elfdeps.Read(fileView{l: l, e: r.e, refs: refs, data: data})
		if errors.Is(err, elfdeps.ErrDynamic) && errors.Is(err, errUnavailable) {
			// The libraries are named further on, in a chunk still on its
			// way: fetch the loader now, look again when it is in.
			l.spec.unlook(r.e)
			d.Needed, d.RunPath = nil, nil
		} else if err != nil {
			l.log.Debug("no ELF dependencies", "path", r.e.Name, "err", err)
			continue
		}
		es = append(es, l.loaderOpens(r.e, d)...)
	}
	l.speculate(es, "ELF dependencies")
}

// errUnavailable: a byte an ELF parse wanted is in no chunk at hand.
var errUnavailable = errors.New("chunk not at hand")

// fileView reads file e from the chunks of a fetch in hand and from the
// cache, never from the registry: an ELF parse must not fetch.
type fileView struct {
	l    *Layer
	e    *index.Entry
	refs []chunkRef
	data [][]byte
}

func (v fileView) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		at := off + int64(n)
		c, ok := v.e.ChunkAt(at)
		if !ok {
			return n, errUnavailable
		}
		k, ok := v.inHand(c, p[n:], at)
		if !ok {
			if k, ok = v.l.readCached(c, p[n:], at); !ok {
				return n, errUnavailable
			}
		}
		n += k
	}
	return n, nil
}

// inHand copies from chunk c if the fetch holds it.
func (v fileView) inHand(c index.Chunk, p []byte, at int64) (int, bool) {
	if c.Zero {
		k := int(min(int64(len(p)), c.End()-at))
		clear(p[:k])
		return k, true
	}
	for i, r := range v.refs {
		if r.e == v.e && r.chunk().Offset == c.Offset {
			return copy(p, v.data[i][at-c.Offset:]), true
		}
	}
	return 0, false
}

// loaderOpens resolves, in the layer, the files the dynamic loader opens
// for an ELF file with dependencies d: the interpreter, its cache and the
// needed libraries found in the layer.
func (l *Layer) loaderOpens(e *index.Entry, d elfdeps.Deps) []*index.Entry {
	ix := l.Index()
	var out []*index.Entry
	add := func(name string) bool {
		x, ok := resolvePath(ix, name)
		if ok && x.Type == index.TypeReg {
			out = append(out, x)
		}
		return ok
	}
	if d.Interp != "" {
		add(d.Interp)
		add("etc/ld.so.cache")
	}
	dirs := searchDirs(e, d)
	for _, n := range d.Needed {
		if strings.Contains(n, "/") {
			continue // a path: relative to the working directory, unknown here
		}
		for _, dir := range dirs {
			if add(path.Join(dir, n)) {
				if n == "libc.so.6" {
					add(path.Join(dir, "gconv/gconv-modules.cache"))
					add("usr/lib/locale/C.utf8/LC_CTYPE")
				}
				break
			}
		}
	}
	return out
}

// multiarch names the Debian multiarch directory of each machine.
var multiarch = map[elf.Machine]string{
	elf.EM_X86_64:  "x86_64-linux-gnu",
	elf.EM_AARCH64: "aarch64-linux-gnu",
	elf.EM_386:     "i386-linux-gnu",
	elf.EM_ARM:     "arm-linux-gnueabihf",
	elf.EM_PPC64:   "powerpc64le-linux-gnu",
	elf.EM_S390:    "s390x-linux-gnu",
	elf.EM_RISCV:   "riscv64-linux-gnu",
}

// searchDirs lists where the loader looks for e's libraries: its run path
// ($ORIGIN expanded; entries with other tokens skipped), then the
// multiarch, lib64 and plain library directories.
func searchDirs(e *index.Entry, d elfdeps.Deps) []string {
	var dirs []string
	for _, p := range d.RunPath {
		p = strings.ReplaceAll(strings.ReplaceAll(p, "${ORIGIN}", "$ORIGIN"), "$ORIGIN", "/"+path.Dir(e.Name))
		if strings.HasPrefix(p, "/") && !strings.Contains(p, "$") {
			dirs = append(dirs, p)
		}
	}
	if m, ok := multiarch[d.Machine]; ok {
		dirs = append(dirs, "lib/"+m, "usr/lib/"+m)
	}
	return append(dirs, "lib64", "usr/lib64", "lib", "usr/lib", "usr/local/lib")
}

// speculate fetches, in one request on a goroutine of the layer, the
// chunks of es not cached or being fetched: for each file its first chunk
// and the rest of it within the read-ahead. It claims them first, so that
// reads arriving meanwhile wait for this fetch.
func (l *Layer) speculate(es []*index.Entry, why string) {
	var refs []chunkRef
	var size int64
	seen := map[chunkKey]bool{}
	for _, e := range es {
		if len(e.Chunks) == 0 {
			continue
		}
		plan, _ := l.plan(chunkRef{e, 0}, 0)
		for _, r := range plan {
			if seen[r.key()] || l.has(r) {
				continue
			}
			seen[r.key()] = true
			refs = append(refs, r)
			size += r.chunk().CompressedEnd - r.chunk().CompressedOffset
		}
	}
	if len(refs) == 0 || !l.spec.spend(size) {
		return
	}
	c := l.fetches.claim(refs)
	if len(c.refs) == 0 {
		l.fetches.release(c)
		return
	}
	started := l.spawn(func() {
		if _, err := l.fetchRefs(l.ctx, c, fetchPrefetch, 0, nil); err != nil && l.ctx.Err() == nil {
			l.log.Debug("speculative fetch failed", "digest", l.desc.Digest.String(), "why", why, "err", err)
		}
	})
	if !started {
		l.fetches.release(c)
		return
	}
	l.log.Debug("speculative fetch", "digest", l.desc.Digest.String(), "why", why, "files", len(es), "chunks", len(c.refs))
}

// speculateStartup fetches the layer's start-up files that exist in it
// in one request and, in another so that the small files do not wait
// behind it, the first of the command's places that holds a file.
func (l *Layer) speculateStartup(names, command []string) {
	var es []*index.Entry
	for _, n := range names {
		if e, ok := resolvePath(l.Index(), n); ok {
			es = append(es, e)
		}
	}
	l.speculate(es, "start-up files")
	for _, n := range command {
		if e, ok := resolvePath(l.Index(), n); ok && e.Type == index.TypeReg {
			l.speculate([]*index.Entry{e}, "default command")
			return
		}
	}
}

// defaultPath is the PATH a runtime gives a container whose image sets
// none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// commandPaths returns where the program of the image's default command
// (Entrypoint, else Cmd) may be: its path, or each PATH directory joined
// with its name. A container run with its default command execs it
// first, so it is fetched with the start-up files (as are, once it is in,
// the libraries it loads). A run that gives another command only loses
// what this fetched.
func commandPaths(cfg ocispec.ImageConfig) []string {
	argv := cfg.Entrypoint
	if len(argv) == 0 {
		argv = cfg.Cmd
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil
	}
	prog := argv[0]
	if strings.Contains(prog, "/") {
		if !path.IsAbs(prog) {
			prog = path.Join("/", cfg.WorkingDir, prog)
		}
		return []string{prog}
	}
	search := defaultPath
	for _, kv := range cfg.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			search = v
		}
	}
	var out []string
	for _, dir := range strings.Split(search, ":") {
		if path.IsAbs(dir) && len(out) < 16 {
			out = append(out, path.Join(dir, prog))
		}
	}
	return out
}

// maxLinkHops bounds symbolic links followed resolving one path, as the
// kernel's 40.
const maxLinkHops = 40

// resolvePath finds name in the layer as a path lookup in the container
// would: following symbolic links in every component, absolute targets
// from the layer's root. It reports false for a path that leaves the
// layer's files, loops or does not exist.
func resolvePath(ix *index.Index, name string) (*index.Entry, bool) {
	parts := strings.Split(name, "/")
	cur := "" // resolved so far, "" is the root
	for hops := 0; len(parts) > 0; {
		p := parts[0]
		parts = parts[1:]
		switch p {
		case "", ".":
			continue
		case "..":
			if cur = path.Dir(cur); cur == "." {
				cur = ""
			}
			continue
		}
		next := path.Join(cur, p)
		e, ok := ix.Lookup(next)
		if !ok {
			return nil, false
		}
		if e.Type != index.TypeSymlink {
			cur = next
			continue
		}
		if hops++; hops > maxLinkHops {
			return nil, false
		}
		if strings.HasPrefix(e.LinkName, "/") {
			cur = ""
		}
		parts = append(strings.Split(e.LinkName, "/"), parts...)
	}
	return ix.Lookup(cur)
}
