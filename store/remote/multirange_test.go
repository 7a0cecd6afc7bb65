// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"slices"
	"testing"
)

// testBlob is the blob the crafted multi-range answers come from.
var testBlob = func() []byte {
	b := make([]byte, 100)
	for i := range b {
		b[i] = byte('A' + i%26)
	}
	return b
}()

// part is one part of a crafted multipart/byteranges answer: blob bytes
// [first, last], unless data or header say otherwise.
type part struct {
	first, last int64
	data        []byte // nil: testBlob[first:last+1]
	header      string // "": "bytes first-last/100"
}

// multipartBody renders parts with boundary.
func multipartBody(t testing.TB, boundary string, parts []part) []byte {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := mw.SetBoundary(boundary); err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		h := p.header
		if h == "" {
			h = fmt.Sprintf("bytes %d-%d/%d", p.first, p.last, len(testBlob))
		}
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Range": {h}})
		if err != nil {
			t.Fatal(err)
		}
		data := p.data
		if data == nil {
			data = testBlob[p.first : p.last+1]
		}
		w.Write(data)
	}
	mw.Close()
	return body.Bytes()
}

// multiResponse is a 206 answer with body, announced with boundary.
func multiResponse(boundary string, body io.Reader) *http.Response {
	return &http.Response{
		StatusCode: http.StatusPartialContent,
		Header:     http.Header{"Content-Type": {"multipart/byteranges; boundary=" + boundary}},
		Body:       io.NopCloser(body),
	}
}

// fills records the reports of a fillFunc.
type fills []struct {
	i int
	n int64
}

func (f *fills) fn(i int, n int64) {
	*f = append(*f, struct {
		i int
		n int64
	}{i, n})
}

// cutReader yields data, then fails as a dropped connection does.
type cutReader struct{ r io.Reader }

var errCut = errors.New("connection reset by peer")

func (c cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errCut
	}
	return n, err
}

func TestReadMulti(t *testing.T) {
	spans := []Span{{10, 20}, {40, 50}}
	alt := bytes.Repeat([]byte{'#'}, 10)
	tests := []struct {
		name     string
		parts    []part
		body     func([]byte) []byte // rewrites the rendered body
		boundary string              // announced in the header; "": the body's
		cut      bool                // the connection drops after the body
		want     string              // "" ok, "final" (malformed: one range per request from now on) or "transient"
	}{
		{name: "one part per range", parts: []part{{first: 10, last: 19}, {first: 40, last: 49}}},
		{name: "reordered", parts: []part{{first: 40, last: 49}, {first: 10, last: 19}}},
		{name: "merged into one part", parts: []part{{first: 10, last: 49}}},
		{name: "duplicate part", parts: []part{{first: 10, last: 19}, {first: 10, last: 19}, {first: 40, last: 49}}},
		{name: "overlapping parts", parts: []part{{first: 10, last: 16}, {first: 13, last: 19}, {first: 40, last: 49}}},
		{name: "overlap keeps the first bytes", parts: []part{{first: 10, last: 19}, {first: 10, last: 19, data: alt}, {first: 40, last: 49}}},
		{name: "duplicate instead of the second half", parts: []part{{first: 10, last: 14}, {first: 10, last: 14}, {first: 40, last: 49}}, want: "final"},
		{name: "missing part", parts: []part{{first: 10, last: 19}}, want: "final"},
		{name: "no parts", parts: nil, want: "final"},
		{name: "part outside the ranges", parts: []part{{first: 10, last: 19}, {first: 40, last: 49}, {first: 60, last: 69}}, want: "final"},
		{name: "part in the gap only", parts: []part{{first: 10, last: 19}, {first: 25, last: 30}, {first: 40, last: 49}}, want: "final"},
		{name: "part before the ranges", parts: []part{{first: 5, last: 19}, {first: 40, last: 49}}, want: "final"},
		{name: "part longer than its range", parts: []part{{first: 10, last: 19, data: testBlob[10:21]}, {first: 40, last: 49}}, want: "final"},
		{name: "part shorter than its range", parts: []part{{first: 10, last: 19, data: testBlob[10:19]}, {first: 40, last: 49}}, want: "final"},
		{name: "bad Content-Range", parts: []part{{first: 10, last: 19, header: "bytes 19-10/100"}, {first: 40, last: 49}}, want: "final"},
		{name: "too many parts", parts: []part{{first: 10, last: 19}, {first: 10, last: 19}, {first: 10, last: 19}, {first: 10, last: 19}, {first: 40, last: 49}}, want: "final"},
		{name: "garbage boundary", parts: []part{{first: 10, last: 19}, {first: 40, last: 49}}, boundary: "not-the-boundary", want: "final"},
		{name: "no final boundary", parts: []part{{first: 10, last: 19}, {first: 40, last: 49}},
			body: func(b []byte) []byte { return b[:bytes.LastIndex(b, []byte("--b0"))] }, want: "final"},
		{name: "connection dropped in a part", parts: []part{{first: 10, last: 19}, {first: 40, last: 49}},
			body: func(b []byte) []byte { return b[:len(b)-30] }, cut: true, want: "transient"},
		{name: "connection dropped after the answer", parts: []part{{first: 10, last: 19}, {first: 40, last: 49}}, cut: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := multipartBody(t, "b0", tt.parts)
			if tt.body != nil {
				body = tt.body(body)
			}
			boundary := cmpOr(tt.boundary, "b0")
			var r io.Reader = bytes.NewReader(body)
			if tt.cut {
				r = cutReader{r}
			}
			bufs := [][]byte{make([]byte, 10), make([]byte, 10)}
			var got fills
			err := readMulti(multiResponse(boundary, r), spans, bufs, got.fn)
			checkMultiResult(t, err, tt.want)
			if tt.want != "" {
				return
			}
			for i, s := range spans {
				if !bytes.Equal(bufs[i], testBlob[s.Off:s.End]) {
					t.Errorf("span %d = %q, want %q", i, bufs[i], testBlob[s.Off:s.End])
				}
			}
			if want := (fills{{0, 10}, {1, 10}}); !slices.Equal(sortFills(got), want) {
				t.Errorf("fills = %v, want each span reported once, complete: %v", got, want)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func sortFills(f fills) fills {
	out := slices.Clone(f)
	slices.SortFunc(out, func(a, b struct {
		i int
		n int64
	}) int {
		return a.i - b.i
	})
	return out
}

// checkMultiResult checks the class of readMulti's error.
func checkMultiResult(t *testing.T, err error, want string) {
	t.Helper()
	var ae *attemptError
	switch want {
	case "":
		if err != nil {
			t.Fatalf("readMulti = %v, want success", err)
		}
	case "final":
		if !errors.As(err, &ae) || !ae.final || !errors.Is(err, errNoMultiRange) {
			t.Fatalf("readMulti = %v, want a final error wrapping errNoMultiRange", err)
		}
	case "transient":
		if !errors.As(err, &ae) || !ae.retry || ae.final {
			t.Fatalf("readMulti = %v, want a transient error", err)
		}
	}
}

func TestReadMultiSinglePart(t *testing.T) {
	spans := []Span{{10, 20}, {40, 50}}
	for _, tt := range []struct {
		cr   string
		want string
	}{
		{"bytes 10-49/100", ""},
		{"bytes 10-19/100", "final"}, // the first range only: no multi-range support
		{"bytes 0-99/100", "final"},  // more than asked for
	} {
		first, last, _ := parseContentRange(tt.cr)
		resp := &http.Response{StatusCode: http.StatusPartialContent, Header: http.Header{"Content-Range": {tt.cr}},
			Body: io.NopCloser(bytes.NewReader(testBlob[first : last+1]))}
		bufs := [][]byte{make([]byte, 10), make([]byte, 10)}
		err := readMulti(resp, spans, bufs, nil)
		t.Run(tt.cr, func(t *testing.T) { checkMultiResult(t, err, tt.want) })
		if err == nil && (!bytes.Equal(bufs[0], testBlob[10:20]) || !bytes.Equal(bufs[1], testBlob[40:50])) {
			t.Errorf("Content-Range %s: bufs = %q", tt.cr, bufs)
		}
	}
}

func TestCoverage(t *testing.T) {
	var c coverage
	steps := []struct {
		lo, hi int64
		fresh  []Span
		total  int64
	}{
		{10, 20, []Span{{10, 20}}, 10},
		{10, 20, nil, 10},                                // duplicate
		{15, 25, []Span{{20, 25}}, 15},                   // overlap
		{30, 40, []Span{{30, 40}}, 25},                   // apart
		{0, 50, []Span{{0, 10}, {25, 30}, {40, 50}}, 50}, // fills the holes
		{49, 50, nil, 50},
	}
	for _, s := range steps {
		fresh := c.add(s.lo, s.hi)
		if !slices.Equal(fresh, s.fresh) || c.total() != s.total {
			t.Fatalf("add(%d, %d) = %v, total %d; want %v, %d", s.lo, s.hi, fresh, c.total(), s.fresh, s.total)
		}
	}
	if len(c) != 1 {
		t.Errorf("coverage = %v, want one merged interval", c)
	}
}
