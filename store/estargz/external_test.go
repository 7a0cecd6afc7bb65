// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	refestargz "github.com/containerd/stargz-snapshotter/estargz"
	refexternaltoc "github.com/containerd/stargz-snapshotter/estargz/externaltoc"
	digest "github.com/opencontainers/go-digest"
)

func btBuildExternal(t testing.TB, in []byte, opts ExternalBuildOptions) ([]byte, ExternalBuildResult) {
	t.Helper()
	var out bytes.Buffer
	res, err := BuildExternal(t.Context(), &out, bytes.NewReader(in), int64(len(in)), opts)
	if err != nil {
		t.Fatalf("BuildExternal: %v", err)
	}
	return out.Bytes(), res
}

// TestBuildExternal builds blobs with an external TOC, lossless or not,
// and opens them with OpenExternal and with the reference library's
// external-TOC reader; a lossless blob gunzips to exactly its input.
func TestBuildExternal(t *testing.T) {
	t.Parallel()
	for _, tt := range btInteropCases() {
		for _, lossless := range []bool{false, true} {
			if lossless && len(tt.opts.PrioritizedFiles) > 0 {
				continue
			}
			name := tt.name
			if lossless {
				name += " lossless"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				in := btMakeTar(t, tt.in)
				blob, res := btBuildExternal(t, in, ExternalBuildOptions{BuildOptions: tt.opts, Lossless: lossless})
				raw := btGunzipAll(t, blob)
				if res.DiffID != digest.FromBytes(raw) || res.UncompressedSize != int64(len(raw)) {
					t.Errorf("DiffID, size = %s, %d; want those of the gunzipped blob %s, %d", res.DiffID, res.UncompressedSize, digest.FromBytes(raw), len(raw))
				}
				if res.Digest != digest.FromBytes(blob) || res.Size != int64(len(blob)) {
					t.Errorf("Digest, Size = %s, %d; want %s, %d", res.Digest, res.Size, digest.FromBytes(blob), len(blob))
				}
				if lossless && !bytes.Equal(raw, in) {
					t.Errorf("lossless blob gunzips to %d bytes that differ from the %d-byte input", len(raw), len(in))
				}
				if bytes.Contains(raw, []byte(TOCTarName)) {
					t.Errorf("the blob's stream holds %s", TOCTarName)
				}
				if _, err := ParseFooter(blob[len(blob)-FooterSize:]); !errors.Is(err, ErrExternalTOC) {
					t.Errorf("ParseFooter = %v, want ErrExternalTOC", err)
				}
				b, err := OpenExternal(context.Background(), bytes.NewReader(blob), int64(len(blob)), res.TOC, OpenOptions{TOCDigest: res.TOCDigest})
				if err != nil {
					t.Fatalf("OpenExternal: %v", err)
				}
				if b.FooterSize != ExternalTOCFooterSize || b.TOCOffset != int64(len(blob))-ExternalTOCFooterSize {
					t.Errorf("footer %d, TOC offset %d; want %d, %d", b.FooterSize, b.TOCOffset, ExternalTOCFooterSize, len(blob)-ExternalTOCFooterSize)
				}
				for _, e := range btDedup(tt.in) {
					btCheckIndexEntry(t, blob, b.Index, e)
				}
				if len(tt.in) > 0 {
					btCheckRefExternal(t, blob, res, tt.opts.MinChunkSize == 0)
				}
			})
		}
	}
}

// btCheckRefExternal opens blob with the reference library's external-TOC
// decompressor and reads every file through it.
func btCheckRefExternal(t *testing.T, blob []byte, res ExternalBuildResult, verify bool) {
	t.Helper()
	dec := refexternaltoc.NewGzipDecompressor(func() ([]byte, error) { return res.TOC, nil })
	r, err := refestargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))), refestargz.WithDecompressors(dec))
	if err != nil {
		t.Fatalf("reference Open: %v", err)
	}
	if got := r.TOCDigest(); got != res.TOCDigest {
		t.Errorf("reference TOCDigest = %s, want %s", got, res.TOCDigest)
	}
	var v refestargz.TOCEntryVerifier
	if verify {
		if v, err = r.VerifyTOC(res.TOCDigest); err != nil {
			t.Fatalf("VerifyTOC: %v", err)
		}
	}
	n := 0
	for _, e := range btReadTar(t, bytes.NewReader(btGunzipAll(t, blob))) {
		if e.hdr.Typeflag == '0' {
			btCheckRefFile(t, r, v, e.hdr.Name, e.data)
			n++
		}
	}
	if n == 0 {
		t.Fatal("no files")
	}
}

func TestOpenExternalRefusals(t *testing.T) {
	t.Parallel()
	in := btMakeTar(t, btMixedEntries())
	blob, res := btBuildExternal(t, in, ExternalBuildOptions{})
	embedded, embRes := btBuildBytes(t, in, BuildOptions{})
	_, otherRes := btBuildExternal(t, btMakeTar(t, btDeepEntries(3)), ExternalBuildOptions{})
	tests := []struct {
		name    string
		blob    []byte
		toc     []byte
		d       digest.Digest
		wantErr error
	}{
		{"embedded footer", embedded, res.TOC, embRes.TOCDigest, ErrNotEStargz},
		{"wrong TOC", blob, otherRes.TOC, res.TOCDigest, ErrVerify},
		{"not gzip", blob, []byte("{}"), res.TOCDigest, ErrNotEStargz},
		{"truncated blob", blob[:len(blob)-1], res.TOC, res.TOCDigest, ErrNotEStargz},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenExternal(context.Background(), bytes.NewReader(tt.blob), int64(len(tt.blob)), tt.toc, OpenOptions{TOCDigest: tt.d})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("OpenExternal = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestBuildExternalLosslessPrioritized(t *testing.T) {
	t.Parallel()
	in := btMakeTar(t, btMixedEntries())
	_, err := BuildExternal(t.Context(), io.Discard, bytes.NewReader(in), int64(len(in)),
		ExternalBuildOptions{BuildOptions: BuildOptions{PrioritizedFiles: []string{"etc/big"}}, Lossless: true})
	if err == nil {
		t.Fatal("BuildExternal with Lossless and PrioritizedFiles succeeded")
	}
}
