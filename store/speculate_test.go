// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store/index"
)

// debianFiles is a merged-/usr Debian layout: /lib and /lib64 are
// symbolic links, the loader and libz are reached through more of them.
func debianFiles(prog []byte) []testutil.File {
	lib := func(name string) testutil.File {
		return testutil.File{Name: name, Data: strings.Repeat("library "+name+"\n", 2000)}
	}
	return []testutil.File{
		{Name: "etc/"}, {Name: "usr/"}, {Name: "usr/bin/"}, {Name: "usr/lib/"},
		{Name: "usr/lib/x86_64-linux-gnu/"}, {Name: "usr/lib64/"},
		{Name: "lib", Link: "usr/lib"},
		{Name: "lib64", Link: "usr/lib64"},
		{Name: "usr/bin/prog", Data: string(prog), Mode: 0o755},
		lib("usr/share-unrelated"),
		{Name: "etc/ld.so.cache", Data: "ld.so-1.7.0 cache"},
		{Name: "etc/passwd", Data: "root:x:0:0:root:/root:/bin/sh\n"},
		{Name: "etc/group", Data: "root:x:0:\n"},
		{Name: "etc/localtime", Link: "/usr/share/zoneinfo/Etc/UTC"},
		{Name: "usr/share/"}, {Name: "usr/share/zoneinfo/"}, {Name: "usr/share/zoneinfo/Etc/"},
		{Name: "usr/share/zoneinfo/Etc/UTC", Data: "TZif2 UTC"},
		lib("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
		{Name: "usr/lib64/ld-linux-x86-64.so.2", Link: "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"},
		lib("usr/lib/x86_64-linux-gnu/libc.so.6"),
		lib("usr/lib/x86_64-linux-gnu/libz.so.1.2.13"),
		{Name: "usr/lib/x86_64-linux-gnu/libz.so.1", Link: "libz.so.1.2.13"},
		lib("usr/lib/x86_64-linux-gnu/unrelated.so"),
		{Name: "usr/lib/x86_64-linux-gnu/gconv/"},
		{Name: "usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", Data: "gconv cache"},
		{Name: "usr/lib/locale/"}, {Name: "usr/lib/locale/C.utf8/"},
		{Name: "usr/lib/locale/C.utf8/LC_CTYPE", Data: "ctype"},
		{Name: "opt/"}, {Name: "opt/app/"}, {Name: "opt/app/lib/"},
		lib("opt/app/lib/libapp.so"),
	}
}

func progELF() []byte {
	return testutil.ELF(true, binary.LittleEndian, "/lib64/ld-linux-x86-64.so.2",
		[]string{"libz.so.1", "libapp.so", "libc.so.6", "libmissing.so.9"}, "$ORIGIN/../../opt/app/lib")
}

// TestSpeculateELFDependencies: reading an ELF program fetches, in one
// more request, its loader, the loader's cache and the libraries it needs
// (through symbolic links and its run path); reading them then fetches
// nothing, and files nobody needs stay unfetched.
func TestSpeculateELFDependencies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		files := debianFiles(progELF())
		l, blob := openGated(t, files, 1<<20)
		l.spec.on = true
		close(blob.reset())
		if got := readFile(t, l, "usr/bin/prog"); !bytes.Equal(got, progELF()) {
			t.Fatal("usr/bin/prog: wrong content")
		}
		synctest.Wait() // the speculative fetch has run
		reads := blob.readCount()
		if reads != 2 {
			t.Errorf("registry reads after reading the program = %d, want 2 (the program, then its dependencies)", reads)
		}
		for _, name := range []string{"lib64/ld-linux-x86-64.so.2", "etc/ld.so.cache", "lib/x86_64-linux-gnu/libz.so.1",
			"usr/lib/x86_64-linux-gnu/libc.so.6", "opt/app/lib/libapp.so",
			"usr/lib/locale/C.utf8/LC_CTYPE", "lib/x86_64-linux-gnu/gconv/gconv-modules.cache"} {
			want := fileData(files, name, l)
			if got := readFile(t, l, name); !bytes.Equal(got, want) {
				t.Errorf("%s: wrong content", name)
			}
		}
		after := blob.readCount()
		if after != reads {
			t.Errorf("reading the dependencies made %d more registry reads, want 0", after-reads)
		}
		for _, name := range []string{"usr/lib/x86_64-linux-gnu/unrelated.so", "usr/share-unrelated"} {
			e, _ := l.Index().Lookup(name)
			if l.has(chunkRef{e, 0}) {
				t.Errorf("%s was fetched", name)
			}
		}
	})
}

// fileData returns the content of the regular file name resolves to.
func fileData(files []testutil.File, name string, l *Layer) []byte {
	e, _ := resolvePath(l.Index(), name)
	for _, f := range files {
		if f.Name == e.Name {
			return []byte(f.Data)
		}
	}
	return nil
}

// TestSpeculateOff: without LayerOptions.Speculate a read fetches only
// what it reads.
func TestSpeculateOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, blob := openGated(t, debianFiles(progELF()), 1<<20)
		close(blob.reset())
		readFile(t, l, "usr/bin/prog")
		synctest.Wait()
		e, _ := resolvePath(l.Index(), "usr/lib/x86_64-linux-gnu/libc.so.6")
		if l.has(chunkRef{e, 0}) {
			t.Error("libc was fetched with speculation off")
		}
	})
}

// TestSpeculateStartupFiles: the start-up files are fetched in one
// request when fetching starts, symbolic links followed, missing ones
// skipped; a read of one of them waits for that request.
func TestSpeculateStartupFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, blob := openGated(t, debianFiles(progELF()), 1<<20)
		gate := blob.reset()
		l.startFetching(fetchOptions{startup: []string{"etc/passwd", "etc/group", "etc/localtime", "etc/nonexistent"}})
		got := make(chan []byte, 1)
		go func() { got <- readFile(t, l, "etc/group") }()
		synctest.Wait() // the read waits for the held speculative request
		close(gate)
		if g := <-got; string(g) != "root:x:0:\n" {
			t.Errorf("etc/group = %q", g)
		}
		synctest.Wait()
		reads := blob.readCount()
		if reads != 1 {
			t.Errorf("registry reads = %d, want 1", reads)
		}
		for _, name := range []string{"etc/passwd", "usr/share/zoneinfo/Etc/UTC"} {
			e, _ := l.Index().Lookup(name)
			if !l.has(chunkRef{e, 0}) {
				t.Errorf("%s was not fetched", name)
			}
		}
	})
}

func TestResolvePath(t *testing.T) {
	b := index.NewBuilder(index.Limits{})
	for _, e := range []index.Entry{
		{Name: "usr", Type: index.TypeDir}, {Name: "usr/lib", Type: index.TypeDir},
		{Name: "usr/lib/a", Type: index.TypeReg},
		{Name: "lib", Type: index.TypeSymlink, LinkName: "usr/lib"},
		{Name: "abs", Type: index.TypeSymlink, LinkName: "/usr/lib/a"},
		{Name: "usr/lib/up", Type: index.TypeSymlink, LinkName: "../../lib/a"},
		{Name: "loop1", Type: index.TypeSymlink, LinkName: "loop2"},
		{Name: "loop2", Type: index.TypeSymlink, LinkName: "loop1"},
		{Name: "escape", Type: index.TypeSymlink, LinkName: "../../../../usr/lib/a"},
	} {
		if err := b.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := b.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"lib/a": "usr/lib/a", "/lib/a": "usr/lib/a", "abs": "usr/lib/a", "lib/up": "usr/lib/a",
		"escape":  "usr/lib/a", // .. at the root stays at the root, as in a container
		"loop1/x": "", "lib/missing": "", "usr/lib/a/b": "",
	} {
		e, ok := resolvePath(ix, name)
		switch {
		case want == "" && ok:
			t.Errorf("%s resolved to %s, want nothing", name, e.Name)
		case want != "" && (!ok || e.Name != want):
			t.Errorf("%s resolved to %v, want %s", name, e, want)
		}
	}
}

func TestCommandPaths(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ocispec.ImageConfig
		want []string
	}{
		{"none", ocispec.ImageConfig{}, nil},
		{"absolute entrypoint wins over cmd", ocispec.ImageConfig{Entrypoint: []string{"/app/run"}, Cmd: []string{"sh"}}, []string{"/app/run"}},
		{"relative to the working directory", ocispec.ImageConfig{Cmd: []string{"./run", "-x"}, WorkingDir: "/srv"}, []string{"/srv/run"}},
		{"default PATH", ocispec.ImageConfig{Cmd: []string{"sh"}},
			[]string{"/usr/local/sbin/sh", "/usr/local/bin/sh", "/usr/sbin/sh", "/usr/bin/sh", "/sbin/sh", "/bin/sh"}},
		{"image PATH, relative entries skipped", ocispec.ImageConfig{Cmd: []string{"python3"}, Env: []string{"LANG=C.UTF-8", "PATH=/opt/py/bin:bin:/usr/bin"}},
			[]string{"/opt/py/bin/python3", "/usr/bin/python3"}},
	} {
		if got := commandPaths(tc.cfg); !slices.Equal(got, tc.want) {
			t.Errorf("%s: commandPaths() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSpeculateCommand: the image's default command is fetched when
// fetching starts, in a request of its own, and the libraries it loads
// follow in one more; the start-up files do not wait for it.
func TestSpeculateCommand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, blob := openGated(t, debianFiles(progELF()), 1<<20)
		l.spec.on = true
		close(blob.reset())
		l.startFetching(fetchOptions{startup: []string{"etc/passwd"}, command: []string{"/usr/local/bin/prog", "/usr/bin/prog", "/bin/prog"}})
		synctest.Wait()
		reads := blob.readCount()
		if reads != 3 {
			t.Errorf("registry reads = %d, want 3 (start-up files, the command, its libraries)", reads)
		}
		for _, name := range []string{"usr/bin/prog", "usr/lib/x86_64-linux-gnu/libc.so.6", "etc/passwd"} {
			e, _ := resolvePath(l.Index(), name)
			if !l.has(chunkRef{e, 0}) {
				t.Errorf("%s was not fetched", name)
			}
		}
	})
}

// randomText returns n bytes that do not compress.
func randomText(seed, n int) string {
	b := make([]byte, n)
	x := uint32(seed*2654435761 + 1)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return string(b)
}

// TestSpeculateSiblings: a read of a small file brings the other small
// files of its directory in the same request, not big ones, not other
// directories' files, and not a directory whose small files are too many.
func TestSpeculateSiblings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		files := []testutil.File{{Name: "enc/"}, {Name: "enc/sub/"}, {Name: "crowd/"}}
		for i := range 5 {
			files = append(files, testutil.File{Name: fmt.Sprintf("enc/m%d.pyc", i), Data: randomText(i, 3000)})
		}
		files = append(files,
			testutil.File{Name: "enc/big.so", Data: randomText(9, 100<<10)},
			testutil.File{Name: "enc/sub/x.pyc", Data: randomText(10, 3000)})
		for i := range 12 { // 12 x 60 KiB of random text: over the budget
			files = append(files, testutil.File{Name: fmt.Sprintf("crowd/f%d", i), Data: randomText(100+i, 60<<10)})
		}
		l, blob := openGated(t, files, 0)
		l.spec.on = true
		close(blob.reset())
		reads := blob.readCount
		readFile(t, l, "enc/m0.pyc")
		synctest.Wait()
		if n := reads(); n != 1 {
			t.Fatalf("reading enc/m0.pyc made %d registry reads, want 1", n)
		}
		for i := 1; i < 5; i++ {
			if got := readFile(t, l, fmt.Sprintf("enc/m%d.pyc", i)); string(got) != randomText(i, 3000) {
				t.Errorf("enc/m%d.pyc: wrong content", i)
			}
		}
		if n := reads(); n != 1 {
			t.Errorf("reading the siblings made %d more registry reads, want 0", n-1)
		}
		for _, name := range []string{"enc/big.so", "enc/sub/x.pyc"} {
			e, _ := l.Index().Lookup(name)
			if l.has(chunkRef{e, 0}) {
				t.Errorf("%s was fetched with its directory's small files", name)
			}
		}
		readFile(t, l, "crowd/f0")
		synctest.Wait()
		e, _ := l.Index().Lookup("crowd/f1")
		if l.has(chunkRef{e, 0}) {
			t.Error("a directory over the budget was fetched")
		}
	})
}
