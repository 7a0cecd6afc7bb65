// SPDX-License-Identifier: Apache-2.0

package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// part is one part of a crafted multi-range answer: blob bytes
// [first, last].
type part struct {
	first, last int64
	data        []byte
}

// badMulti answers a multi-range request with a multipart answer spoiled
// as m says, made of the ranges fetched one by one from the registry.
func (p *Proxy) badMulti(w http.ResponseWriter, r *http.Request, m Multi) {
	ranges, err := parseRanges(r.Header.Get("Range"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestedRangeNotSatisfiable)
		return
	}
	var parts []part
	var total string
	for _, rg := range ranges {
		pt, tot, status, err := p.fetchRange(r, rg[0], rg[1])
		if err != nil {
			http.Error(w, err.Error(), status)
			return
		}
		parts, total = append(parts, pt), tot
	}
	parts, err = p.spoil(r, parts, m)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, pt := range parts {
		pw, _ := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("bytes %d-%d/%s", pt.first, pt.last, total)},
		})
		pw.Write(pt.data)
	}
	mw.Close()
	boundary := mw.Boundary()
	if m == MultiGarbage {
		boundary = "not-" + boundary
	}
	w.Header().Set("Content-Type", "multipart/byteranges; boundary="+boundary)
	w.Header().Set("Content-Length", strconv.Itoa(body.Len()))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(body.Bytes())
}

// spoil changes the correct parts as m says.
func (p *Proxy) spoil(r *http.Request, parts []part, m Multi) ([]part, error) {
	first := parts[0]
	half := first.first + (first.last-first.first+1)/2 // the first byte of the second half
	head := part{first.first, half - 1, first.data[:half-first.first]}
	switch m {
	case MultiDupHole:
		if half == first.first { // one byte: nothing to leave out but all
			return parts[1:], nil
		}
		return append([]part{head, head}, parts[1:]...), nil
	case MultiOverlap:
		if half == first.first { // one byte: nothing to overlap
			return parts, nil
		}
		tail := part{max(first.first, half-1), first.last, first.data[max(0, half-1-first.first):]}
		return append([]part{head, tail}, parts[1:]...), nil
	case MultiMissing:
		return parts[:len(parts)-1], nil
	case MultiOutside:
		last := parts[len(parts)-1]
		out, _, _, err := p.fetchRange(r, last.last+1, last.last+1)
		if err != nil { // the last range ends the blob: one before the first
			out, _, _, err = p.fetchRange(r, 0, 0)
		}
		return append(parts, out), err
	}
	return parts, nil
}

// fetchRange GETs blob bytes [first, last] from the registry with r's
// headers, and the blob's total size.
func (p *Proxy) fetchRange(r *http.Request, first, last int64) (part, string, int, error) {
	out, err := p.backendRequest(r.Context(), r)
	if err != nil {
		return part{}, "", http.StatusBadGateway, err
	}
	out.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, last))
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		return part{}, "", http.StatusBadGateway, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return part{}, "", resp.StatusCode, fmt.Errorf("range %d-%d: status %s", first, last, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, last-first+1))
	if err != nil || int64(len(data)) != last-first+1 {
		return part{}, "", http.StatusBadGateway, fmt.Errorf("range %d-%d: short answer: %v", first, last, err)
	}
	_, total, _ := strings.Cut(resp.Header.Get("Content-Range"), "/")
	return part{first, last, data}, total, 0, nil
}

// parseRanges parses "bytes=a-b,c-d,...": closed ranges only.
func parseRanges(h string) ([][2]int64, error) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return nil, fmt.Errorf("bad Range %q", h)
	}
	var out [][2]int64
	for _, s := range strings.Split(spec, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
		first, err1 := strconv.ParseInt(a, 10, 64)
		last, err2 := strconv.ParseInt(b, 10, 64)
		if !ok || err1 != nil || err2 != nil || first < 0 || last < first {
			return nil, fmt.Errorf("bad Range %q", h)
		}
		out = append(out, [2]int64{first, last})
	}
	return out, nil
}
