// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

type rdTOCCase struct {
	name    string
	entries []map[string]any
	wantErr error // nil: Open must succeed
	check   func(t *testing.T, b *Blob)
}

var rdDigest = digest.FromString("chunk").String()

// rdE is a TOC entry; kv alternates keys and values.
func rdE(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// rdRegE is a one-chunk regular file of size n at blob offset 0.
func rdRegE(name string, n int64, kv ...any) map[string]any {
	return rdE(append([]any{"name", name, "type", "reg", "size", n, "chunkDigest", rdDigest}, kv...)...)
}

func rdDeepName(prefix string, depth int) string {
	return prefix + strings.Repeat("/d", depth) + "/f"
}

// rdTOCCases are TOCs that are well formed gzip and tar but describe
// impossible, hostile or unverifiable trees, plus a few valid oddities.
func rdTOCCases() []rdTOCCase {
	lookup := func(name string, check func(t *testing.T, e *index.Entry)) func(*testing.T, *Blob) {
		return func(t *testing.T, b *Blob) {
			e, ok := b.Index.Lookup(name)
			if !ok {
				t.Fatalf("Lookup(%q) found nothing", name)
			}
			check(t, e)
		}
	}
	manyDeep := func(n, depth int) []map[string]any {
		var es []map[string]any
		for i := range n {
			es = append(es, rdE("name", rdDeepName(fmt.Sprint("p", i), depth), "type", "fifo"))
		}
		return es
	}
	return []rdTOCCase{
		{name: "empty layer", entries: []map[string]any{}, check: func(t *testing.T, b *Blob) {
			if b.Index.Len() != 1 {
				t.Errorf("Len() = %d, want 1", b.Index.Len())
			}
		}},
		{name: "absolute name is cleaned", entries: []map[string]any{rdE("name", "/etc//passwd", "type", "fifo")},
			check: lookup("etc/passwd", func(t *testing.T, e *index.Entry) {})},
		{name: "absolute symlink target is data", entries: []map[string]any{rdE("name", "l", "type", "symlink", "linkName", "/../../etc/shadow")},
			check: lookup("l", func(t *testing.T, e *index.Entry) {
				if e.LinkName != "/../../etc/shadow" {
					t.Errorf("LinkName = %q", e.LinkName)
				}
			})},
		{name: "names carried forward", entries: []map[string]any{
			rdE("name", "a", "type", "fifo", "uid", 7, "gid", 8, "userName", "u7", "groupName", "g8"),
			rdE("name", "b", "type", "fifo", "uid", 9, "gid", 8),
			rdE("name", "c", "type", "fifo", "uid", 7, "gid", 8),
		}, check: func(t *testing.T, b *Blob) {
			for name, want := range map[string]string{"a": "u7:g8", "b": ":g8", "c": "u7:g8"} {
				e, _ := b.Index.Lookup(name)
				if got := e.UserName + ":" + e.GroupName; got != want {
					t.Errorf("%s: owner names %q, want %q", name, got, want)
				}
			}
		}},
		{name: "xattrs are base64", entries: []map[string]any{rdE("name", "x", "type", "fifo", "xattrs", map[string]any{"user.a": "AAEC"})},
			check: lookup("x", func(t *testing.T, e *index.Entry) {
				if !bytes.Equal(e.Xattrs["user.a"], []byte{0, 1, 2}) {
					t.Errorf("Xattrs = %q", e.Xattrs)
				}
			})},
		{name: "chunk size 0 means to the end", entries: []map[string]any{
			rdRegE("f", 10, "chunkSize", 4),
			rdE("name", "f", "type", "chunk", "chunkOffset", 4, "chunkDigest", rdDigest),
		}, check: lookup("f", func(t *testing.T, e *index.Entry) {
			if len(e.Chunks) != 2 || e.Chunks[1].Size != 6 {
				t.Errorf("Chunks = %+v", e.Chunks)
			}
		})},
		{name: "landmarks", entries: []map[string]any{rdRegE(".no.prefetch.landmark", 1), rdRegE("./.prefetch.landmark", 1, "offset", 0)},
			check: func(t *testing.T, b *Blob) {
				if !b.NoPrefetch {
					t.Error("NoPrefetch = false")
				}
			}},
		{name: "landmark below the root is a file", entries: []map[string]any{rdRegE("d/.no.prefetch.landmark", 1)},
			check: func(t *testing.T, b *Blob) {
				if b.NoPrefetch {
					t.Error("NoPrefetch = true")
				}
			}},

		{name: "dotdot escape", entries: []map[string]any{rdE("name", "../etc/passwd", "type", "fifo")}, wantErr: index.ErrInvalid},
		{name: "nested dotdot escape", entries: []map[string]any{rdE("name", "a/../../x", "type", "fifo")}, wantErr: index.ErrInvalid},
		{name: "NUL in name", entries: []map[string]any{rdE("name", "a\x00b", "type", "fifo")}, wantErr: index.ErrInvalid},
		{name: "name too long", entries: []map[string]any{rdE("name", strings.Repeat("n", index.MaxNameLen+1), "type", "fifo")}, wantErr: index.ErrInvalid},
		{name: "duplicate file", entries: []map[string]any{rdE("name", "a", "type", "fifo"), rdE("name", "./a", "type", "fifo")}, wantErr: index.ErrInvalid},
		{name: "duplicate dir", entries: []map[string]any{rdE("name", "a/", "type", "dir"), rdE("name", "a", "type", "dir")}, wantErr: index.ErrInvalid},
		{name: "parent is a file", entries: []map[string]any{rdE("name", "a", "type", "fifo"), rdE("name", "a/b", "type", "fifo")}, wantErr: index.ErrInvalid},
		{name: "root is a file", entries: []map[string]any{rdE("name", "./", "type", "fifo")}, wantErr: index.ErrInvalid},
		{name: "hard link loop", entries: []map[string]any{
			rdE("name", "a", "type", "hardlink", "linkName", "b"), rdE("name", "b", "type", "hardlink", "linkName", "a"),
		}, wantErr: index.ErrInvalid},
		{name: "hard link to itself", entries: []map[string]any{rdE("name", "a", "type", "hardlink", "linkName", "a")}, wantErr: index.ErrInvalid},
		{name: "hard link to missing", entries: []map[string]any{rdE("name", "a", "type", "hardlink", "linkName", "nope")}, wantErr: index.ErrInvalid},
		{name: "hard link to directory", entries: []map[string]any{
			rdE("name", "d", "type", "dir"), rdE("name", "a", "type", "hardlink", "linkName", "d"),
		}, wantErr: index.ErrInvalid},
		{name: "hard link target escapes", entries: []map[string]any{rdE("name", "a", "type", "hardlink", "linkName", "../x")}, wantErr: index.ErrInvalid},
		{name: "unknown type", entries: []map[string]any{rdE("name", "a", "type", "socket")}, wantErr: index.ErrInvalid},
		{name: "missing type", entries: []map[string]any{rdE("name", "a")}, wantErr: index.ErrInvalid},
		{name: "bad modtime", entries: []map[string]any{rdE("name", "a", "type", "fifo", "modtime", "yesterday")}, wantErr: index.ErrInvalid},
		{name: "negative uid", entries: []map[string]any{rdE("name", "a", "type", "fifo", "uid", -1)}, wantErr: index.ErrInvalid},
		{name: "uid overflows int", entries: []map[string]any{rdE("name", "a", "type", "fifo", "uid", 1e30)}, wantErr: index.ErrInvalid},
		{name: "mode too large", entries: []map[string]any{rdE("name", "a", "type", "fifo", "mode", int64(1)<<40)}, wantErr: index.ErrInvalid},
		{name: "negative mode", entries: []map[string]any{rdE("name", "a", "type", "fifo", "mode", -1)}, wantErr: index.ErrInvalid},
		{name: "device number too large", entries: []map[string]any{rdE("name", "a", "type", "char", "devMajor", int64(1)<<33)}, wantErr: index.ErrInvalid},
		{name: "size on a directory", entries: []map[string]any{rdE("name", "a", "type", "dir", "size", 5)}, wantErr: index.ErrInvalid},
		{name: "negative size", entries: []map[string]any{rdE("name", "a", "type", "reg", "size", -5)}, wantErr: index.ErrInvalid},
		{name: "bad file digest", entries: []map[string]any{rdRegE("a", 1, "digest", "sha256:nothex")}, wantErr: index.ErrInvalid},
		{name: "missing chunk digest", entries: []map[string]any{rdRegE("a", 3, "chunkDigest", "")}, wantErr: index.ErrInvalid},
		{name: "bad chunk digest", entries: []map[string]any{rdRegE("a", 3, "chunkDigest", "sha256:zz")}, wantErr: index.ErrInvalid},
		{name: "unknown chunk digest algorithm", entries: []map[string]any{rdRegE("a", 3, "chunkDigest", "md5:00")}, wantErr: index.ErrInvalid},
		{name: "negative offset", entries: []map[string]any{rdRegE("a", 3, "offset", -1)}, wantErr: index.ErrInvalid},
		{name: "offset at the TOC", entries: []map[string]any{rdRegE("a", 3, "offset", 1<<40)}, wantErr: index.ErrInvalid},
		{name: "negative inner offset", entries: []map[string]any{rdRegE("a", 3, "innerOffset", -1)}, wantErr: index.ErrInvalid},
		{name: "huge inner offset", entries: []map[string]any{rdRegE("a", 3, "innerOffset", int64(1)<<62)}, wantErr: index.ErrInvalid},
		{name: "huge size", entries: []map[string]any{rdRegE("a", int64(1)<<62)}, wantErr: index.ErrInvalid},
		{name: "max size", entries: []map[string]any{rdRegE("a", int64(1<<63-1), "innerOffset", int64(1<<63-1))}, wantErr: index.ErrInvalid},
		{name: "negative chunk size", entries: []map[string]any{rdRegE("a", 3, "chunkSize", -1)}, wantErr: index.ErrInvalid},
		{name: "chunk size past the file", entries: []map[string]any{rdRegE("a", 3, "chunkSize", 4)}, wantErr: index.ErrInvalid},
		{name: "chunks leave a gap", entries: []map[string]any{rdRegE("a", 10, "chunkSize", 4)}, wantErr: index.ErrInvalid},
		{name: "chunks overlap", entries: []map[string]any{
			rdRegE("a", 10, "chunkSize", 4), rdE("name", "a", "type", "chunk", "chunkOffset", 2, "chunkDigest", rdDigest),
		}, wantErr: index.ErrInvalid},
		{name: "chunk offset past the file", entries: []map[string]any{
			rdRegE("a", 10, "chunkSize", 4), rdE("name", "a", "type", "chunk", "chunkOffset", 11, "chunkDigest", rdDigest),
		}, wantErr: index.ErrInvalid},
		{name: "chunk follows nothing", entries: []map[string]any{rdE("name", "a", "type", "chunk", "chunkDigest", rdDigest)}, wantErr: index.ErrInvalid},
		{name: "chunk follows an empty file", entries: []map[string]any{
			rdE("name", "a", "type", "reg"), rdE("name", "a", "type", "chunk", "chunkDigest", rdDigest),
		}, wantErr: index.ErrInvalid},
		{name: "chunk names another file", entries: []map[string]any{
			rdRegE("a", 10, "chunkSize", 4), rdE("name", "b", "type", "chunk", "chunkOffset", 4, "chunkDigest", rdDigest),
		}, wantErr: index.ErrInvalid},
		{name: "offsets go backwards", entries: []map[string]any{rdRegE("a", 3, "offset", 10), rdRegE("b", 3, "offset", 5)}, wantErr: index.ErrInvalid},
		{name: "xattr not base64", entries: []map[string]any{rdE("name", "x", "type", "fifo", "xattrs", map[string]any{"user.a": "!!"})}, wantErr: index.ErrInvalid},
		{name: "xattr of a hard link not base64", entries: []map[string]any{
			rdE("name", "x", "type", "fifo"), rdE("name", "h", "type", "hardlink", "linkName", "x", "xattrs", map[string]any{"user.a": "!!"}),
		}, wantErr: index.ErrInvalid},
		{name: "xattr too large", entries: []map[string]any{rdE("name", "x", "type", "fifo", "xattrs", map[string]any{"user.a": strings.Repeat("A", 90000)})}, wantErr: index.ErrInvalid},
		{name: "implicit directories past the limit", entries: manyDeep(40, 2000), wantErr: index.ErrInvalid},
	}
}

func TestOpenTOC(t *testing.T) {
	for _, tt := range rdTOCCases() {
		t.Run(tt.name, func(t *testing.T) {
			blob, d := rdTocBlob(t, tt.entries...)
			b, err := rdOpenBytes(blob, d)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("Open() error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && tt.check != nil {
				tt.check(t, b)
			}
		})
	}
}

// rdRawTOCCases are TOC documents that are not even the right JSON.
func rdRawTOCCases() []struct{ name, json string } {
	return []struct{ name, json string }{
		{"not JSON", "hello"},
		{"array", "[]"},
		{"version 2", `{"version":2,"entries":[]}`},
		{"no version", `{"entries":[]}`},
		{"no entries", `{"version":1}`},
		{"entries twice", `{"version":1,"entries":[],"entries":[]}`},
		{"entries not an array", `{"version":1,"entries":{}}`},
		{"entry not an object", `{"version":1,"entries":[1]}`},
		{"truncated", `{"version":1,"entries":[{"name":"a","type":"fifo"}`},
		{"trailing data", `{"version":1,"entries":[]} {}`},
		{"field of the wrong type", `{"version":1,"entries":[{"name":1}]}`},
	}
}

func TestOpenRawTOC(t *testing.T) {
	for _, tt := range rdRawTOCCases() {
		t.Run(tt.name, func(t *testing.T) {
			var w rdBlobWriter
			blob, d := w.finish(t, []byte(tt.json))
			if _, err := rdOpenBytes(blob, d); !errors.Is(err, index.ErrInvalid) {
				t.Fatalf("Open(%q) error = %v, want %v", tt.json, err, index.ErrInvalid)
			}
		})
	}
}

// rdGzip compresses data into one member.
func rdGzip(t testing.TB, data []byte) []byte {
	var w rdBlobWriter
	w.member(t, data)
	return w.buf.Bytes()
}

// rdTarHeaderOnly is a tar header claiming size bytes, with no payload.
func rdTarHeaderOnly(t testing.TB, name string, typ byte, size int64) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Typeflag: typ, Name: name, Size: size}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes() // not closed: the payload is missing
}

// rdSparse is a huge blob of zeros ending in a given tail, for limits
// that must be enforced before anything is allocated.
type rdSparse struct {
	size int64
	tail []byte
}

func (s rdSparse) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	tailOff := s.size - int64(len(s.tail))
	for i := range p {
		if o := off + int64(i); o >= tailOff && o < s.size {
			p[i] = s.tail[o-tailOff]
		}
	}
	return len(p), nil
}

type rdErrReader struct{ err error }

func (r rdErrReader) ReadAt([]byte, int64) (int, error) { return 0, r.err }

func TestOpenBlob(t *testing.T) {
	good, goodDigest := rdTocBlob(t, rdE("name", "a", "type", "fifo"))
	json := []byte(`{"version":1,"entries":[]}`)
	withTOCMember := func(member []byte) []byte {
		return AppendFooter(append(rdGzip(t, nil), member...), 20)
	}
	errIO := errors.New("I/O error")
	bomb := rdGzip(t, append(rdTarHeaderOnly(t, TOCTarName, tar.TypeReg, 8<<20), make([]byte, 8<<20)...))
	tests := []struct {
		name    string
		r       io.ReaderAt
		size    int64
		opts    OpenOptions
		wantErr error
	}{
		{"good", bytes.NewReader(good), int64(len(good)), OpenOptions{TOCDigest: goodDigest}, nil},
		{"wrong TOC digest", bytes.NewReader(good), int64(len(good)), OpenOptions{TOCDigest: digest.FromString("other")}, ErrVerify},
		{"no TOC digest", bytes.NewReader(good), int64(len(good)), OpenOptions{}, nil},
		{"bad TOC digest", bytes.NewReader(good), int64(len(good)), OpenOptions{TOCDigest: "sha256:xyz"}, nil},
		{"negative MaxTOCSize", bytes.NewReader(good), int64(len(good)), OpenOptions{TOCDigest: goodDigest, MaxTOCSize: -1}, nil},
		{"TOC over MaxTOCSize", bytes.NewReader(good), int64(len(good)), OpenOptions{TOCDigest: goodDigest, MaxTOCSize: 10}, ErrTooLarge},
		{"empty blob", bytes.NewReader(nil), 0, OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"negative size", bytes.NewReader(good), -1, OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"plain gzip", bytes.NewReader(rdGzip(t, make([]byte, 1000))), int64(len(rdGzip(t, make([]byte, 1000)))), OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"size larger than the data", bytes.NewReader(good), int64(len(good)) + 10, OpenOptions{TOCDigest: goodDigest}, io.ErrUnexpectedEOF},
		{"read error", rdErrReader{errIO}, 1000, OpenOptions{TOCDigest: goodDigest}, errIO},
		{"external TOC", bytes.NewReader(append(make([]byte, 100), rdExternalFooter()...)), 146, OpenOptions{TOCDigest: goodDigest}, ErrExternalTOC},
		{"TOC offset past the blob", bytes.NewReader(AppendFooter(nil, 1000)), FooterSize, OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"TOC offset at the footer", bytes.NewReader(AppendFooter(make([]byte, 10), 10)), 10 + FooterSize, OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"TOC offset max", bytes.NewReader(AppendFooter(nil, 1<<63-1)), FooterSize, OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"huge compressed TOC", rdSparse{1 << 50, AppendFooter(nil, 0)}, 1 << 50, OpenOptions{TOCDigest: goodDigest}, ErrTooLarge},
		{"TOC member not gzip", rdBytes(withTOCMember(make([]byte, 100))), int64(len(withTOCMember(make([]byte, 100)))), OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"TOC member empty tar", rdBytes(withTOCMember(rdGzip(t, make([]byte, 1024)))), int64(len(withTOCMember(rdGzip(t, make([]byte, 1024))))), OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"TOC entry misnamed", rdBytes(withTOCMember(rdGzip(t, rdTocTar(t, "index.json", json)))), int64(len(withTOCMember(rdGzip(t, rdTocTar(t, "index.json", json))))), OpenOptions{TOCDigest: digest.FromBytes(json)}, ErrNotEStargz},
		{"TOC entry a directory", rdBytes(withTOCMember(rdGzip(t, rdTarHeaderOnly(t, TOCTarName, tar.TypeDir, 0)))), int64(len(withTOCMember(rdGzip(t, rdTarHeaderOnly(t, TOCTarName, tar.TypeDir, 0))))), OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"TOC truncated", rdBytes(withTOCMember(rdGzip(t, rdTarHeaderOnly(t, TOCTarName, tar.TypeReg, 1000)))), int64(len(withTOCMember(rdGzip(t, rdTarHeaderOnly(t, TOCTarName, tar.TypeReg, 1000))))), OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"TOC size beyond deflate", rdBytes(withTOCMember(rdGzip(t, rdTarHeaderOnly(t, TOCTarName, tar.TypeReg, 50<<20)))), int64(len(withTOCMember(rdGzip(t, rdTarHeaderOnly(t, TOCTarName, tar.TypeReg, 50<<20))))), OpenOptions{TOCDigest: goodDigest}, ErrNotEStargz},
		{"gzip bomb", rdBytes(withTOCMember(bomb)), int64(len(withTOCMember(bomb))), OpenOptions{TOCDigest: goodDigest, MaxTOCSize: 1 << 20}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), tt.r, tt.size, tt.opts)
			if tt.wantErr == nil && tt.name != "good" {
				if err == nil {
					t.Fatal("Open() succeeded, want an error")
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("Open() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func rdBytes(b []byte) io.ReaderAt { return bytes.NewReader(b) }

// TestOpenBoundedAllocation opens blobs whose footer and TOC headers claim
// huge sizes and checks that Open allocates little.
func TestOpenBoundedAllocation(t *testing.T) {
	if rdRace {
		t.Skip("allocation counts need a non-race build")
	}
	opts := OpenOptions{TOCDigest: digest.FromString("x")}
	huge := rdSparse{1 << 50, AppendFooter(nil, 0)}
	claim := AppendFooter(append(rdGzip(t, nil), rdGzip(t, rdTarHeaderOnly(t, TOCTarName, tar.TypeReg, 60<<20))...), 20)
	for name, open := range map[string]func(){
		"huge region": func() { _, _ = Open(context.Background(), huge, huge.size, opts) },
		"huge claim":  func() { _, _ = Open(context.Background(), bytes.NewReader(claim), int64(len(claim)), opts) },
	} {
		allocs := testing.AllocsPerRun(5, open)
		if allocs > 100 {
			t.Errorf("%s: %v allocations", name, allocs)
		}
	}
}

// TestOpenGzipBombStopsEarly checks that a TOC whose tar header lies
// about a small size cannot make Open inflate much more than the limit.
func TestOpenGzipBombStopsEarly(t *testing.T) {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	// The header claims half the limit; 16 MiB of zeros follow. Only the
	// claimed bytes are inflated, so Open fails fast on the digest.
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: TOCTarName, Size: 512 << 10})
	_, _ = zw.Write(make([]byte, 16<<20))
	_ = zw.Close()
	blob := AppendFooter(append(rdGzip(t, nil), b.Bytes()...), 20)
	r := &rdCountingReaderAt{r: bytes.NewReader(blob)}
	_, err := Open(context.Background(), r, int64(len(blob)), OpenOptions{TOCDigest: digest.FromString("x"), MaxTOCSize: 1 << 20})
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("Open() error = %v, want %v", err, ErrVerify)
	}
}
