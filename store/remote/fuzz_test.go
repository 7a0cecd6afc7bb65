// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"testing"
)

// FuzzCheckContentRange: a registry's Content-Range header is untrusted;
// only the exact range asked for is accepted, and nothing panics.
func FuzzCheckContentRange(f *testing.F) {
	for _, s := range []string{"bytes 10-19/100", "bytes 10-19/*", "bytes -1-19/1", "bytes 10-19", "", "bytes 9223372036854775807-0/1"} {
		f.Add(s, int64(10), int64(19))
	}
	f.Fuzz(func(t *testing.T, h string, first, last int64) {
		if err := checkContentRange(h, first, last); err == nil {
			want := fmt.Sprintf("bytes %d-%d/", first, last)
			if len(h) < len(want) || h[:len(want)] != want {
				t.Errorf("checkContentRange(%q, %d, %d) accepted a different range", h, first, last)
			}
		}
	})
}

// FuzzReadMulti: a multi-range answer is untrusted. readMulti never
// panics, accepts an answer exactly when every byte of every range came
// in a well-formed part inside the ranges (duplicates and overlaps
// counted once, within the part caps), and then fills the buffers with
// the first bytes sent for each position, as a byte-by-byte reading
// does.
func FuzzReadMulti(f *testing.F) {
	seeds := [][]part{
		{{first: 10, last: 19}, {first: 40, last: 49}},                        // one part per range
		{{first: 10, last: 49}},                                               // merged
		{{first: 10, last: 19}, {first: 10, last: 19}, {first: 40, last: 49}}, // duplicate part
		{{first: 10, last: 14}, {first: 10, last: 14}, {first: 40, last: 49}}, // duplicate instead of a half
		{{first: 10, last: 16}, {first: 13, last: 19}, {first: 40, last: 49}}, // overlapping
		{{first: 10, last: 19}},                                               // missing part
		{{first: 10, last: 19}, {first: 40, last: 49}, {first: 60, last: 69}}, // outside
	}
	for _, ps := range seeds {
		f.Add(multipartBody(f, "b0", ps), "b0", uint8(10), uint8(9), uint8(19), uint8(9))
	}
	f.Add(multipartBody(f, "b0", seeds[0]), "garbage", uint8(10), uint8(9), uint8(19), uint8(9))
	f.Fuzz(func(t *testing.T, body []byte, boundary string, a, la, gap, lb uint8) {
		s0 := Span{int64(a % 64), int64(a%64) + 1 + int64(la%32)}
		s1 := Span{s0.End + 1 + int64(gap%32), s0.End + 2 + int64(gap%32) + int64(lb%32)}
		spans := []Span{s0, s1}
		bufs := [][]byte{make([]byte, s0.Len()), make([]byte, s1.Len())}
		err := readMulti(multiResponse(boundary, bytes.NewReader(body)), spans, bufs, nil)
		want, ok := naiveMulti(body, boundary, spans)
		if (err == nil) != ok {
			t.Fatalf("readMulti = %v, byte-by-byte reading ok = %v", err, ok)
		}
		if ok && (!bytes.Equal(bufs[0], want[0]) || !bytes.Equal(bufs[1], want[1])) {
			t.Fatalf("readMulti filled %q, byte-by-byte reading %q", bufs, want)
		}
	})
}

// naiveMulti reads a multi-range answer byte by byte, with readMulti's
// rules, into fresh buffers.
func naiveMulti(body []byte, boundary string, spans []Span) ([][]byte, bool) {
	out := make([][]byte, len(spans))
	have := make([][]bool, len(spans))
	for i, s := range spans {
		out[i], have[i] = make([]byte, s.Len()), make([]bool, s.Len())
	}
	lo, hi := spans[0].Off, spans[len(spans)-1].End
	_, params, _ := mime.ParseMediaType("multipart/byteranges; boundary=" + boundary) // as the header is read
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var nparts, total int64
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false
		}
		first, last, err := parseContentRange(p.Header.Get("Content-Range"))
		if err != nil {
			return nil, false
		}
		nparts++
		total += last - first + 1
		meets := false
		for _, s := range spans {
			meets = meets || (s.Off <= last && first < s.End)
		}
		if first < lo || last >= hi || !meets || nparts > int64(len(spans)+maxExtraParts) || total > maxPartBytes*(hi-lo) {
			return nil, false
		}
		data, err := io.ReadAll(p)
		if err != nil || int64(len(data)) != last-first+1 {
			return nil, false
		}
		for k, b := range data {
			pos := first + int64(k)
			for i, s := range spans {
				if pos >= s.Off && pos < s.End && !have[i][pos-s.Off] {
					out[i][pos-s.Off], have[i][pos-s.Off] = b, true
				}
			}
		}
	}
	for i := range spans {
		for _, h := range have[i] {
			if !h {
				return nil, false
			}
		}
	}
	return out, true
}
