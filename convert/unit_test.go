// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"testing"

	"github.com/docker/distribution/registry/api/errcode"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
)

func TestDetectCompression(t *testing.T) {
	tarBytes := makeTar(t, tarEntry{name: "a", body: "x"})
	tests := []struct {
		name      string
		in        []byte
		mediaType string
		want      compression
		wantErr   error
	}{
		{name: "gzip", in: gzipBytes(t, tarBytes), want: gzipped},
		{name: "zstd", in: zstdBytes(t, tarBytes), want: zstded},
		{name: "zstd-skippable", in: []byte{0x50, 0x2a, 0x4d, 0x18, 0, 0}, want: zstded},
		{name: "tar", in: tarBytes, want: uncompressed},
		{name: "mislabelled", in: gzipBytes(t, tarBytes), mediaType: "application/vnd.oci.image.layer.v1.tar", want: gzipped},
		{name: "empty", in: nil, want: uncompressed},
		{name: "xz", in: xzMagic, wantErr: ErrUnsupported},
		{name: "bzip2", in: []byte("BZh91AY"), wantErr: ErrUnsupported},
		{name: "encrypted", in: gzipBytes(t, tarBytes), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip+encrypted", wantErr: ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := detectCompression(bufio.NewReader(bytes.NewReader(tt.in)), tt.mediaType)
			if !errors.Is(err, tt.wantErr) || (err == nil && got != tt.want) {
				t.Errorf("detectCompression() = %v, %v, want %v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestDecompress(t *testing.T) {
	tarBytes := makeTar(t, tarEntry{name: "a", body: randomText(9, 10000)})
	for _, in := range [][]byte{gzipBytes(t, tarBytes), zstdBytes(t, tarBytes), tarBytes} {
		br := bufio.NewReader(bytes.NewReader(in))
		c, err := detectCompression(br, "")
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		n, err := decompress(&out, br, c)
		if err != nil || n != int64(len(tarBytes)) || !bytes.Equal(out.Bytes(), tarBytes) {
			t.Errorf("decompress(%v) = %d, %v; want the %d-byte tar", c, n, err, len(tarBytes))
		}
	}
	if _, err := decompress(&bytes.Buffer{}, bufio.NewReader(bytes.NewReader(gzipBytes(t, tarBytes)[:100])), gzipped); err == nil {
		t.Error("decompress(truncated gzip) succeeded")
	}
}

func TestRewriteConfig(t *testing.T) {
	in := `{"architecture":"amd64","os":"linux","x-unknown":{"keep":[1,2]},` +
		`"history":[{"created_by":"a"},{"created_by":"b","empty_layer":true}],` +
		`"rootfs":{"type":"layers","diff_ids":["sha256:` + fmt.Sprintf("%064d", 1) + `"]}}`
	want := []digest.Digest{digest.FromString("x"), digest.FromString("y")}
	out, err := rewriteConfig([]byte(in), want)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		XUnknown json.RawMessage  `json:"x-unknown"`
		History  []map[string]any `json:"history"`
		RootFS   struct {
			Type    string          `json:"type"`
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.RootFS.DiffIDs, want) || got.RootFS.Type != "layers" || len(got.History) != 2 ||
		string(got.XUnknown) != `{"keep":[1,2]}` {
		t.Errorf("rewriteConfig() = %s", out)
	}
	again, err := rewriteConfig(out, want)
	if err != nil || !bytes.Equal(again, out) {
		t.Errorf("rewriteConfig is not stable: %s then %s (%v)", out, again, err)
	}
	if _, err := rewriteConfig([]byte("[]"), want); err == nil {
		t.Error("rewriteConfig(non-object) succeeded")
	}
}

func TestPresentFiles(t *testing.T) {
	tarBytes := makeTar(t, tarEntry{name: "./etc/", typ: tar.TypeDir}, tarEntry{name: "./etc/hosts", body: "h"},
		tarEntry{name: "bin/sh", body: "s"})
	got, err := presentFiles(bytes.NewReader(tarBytes), int64(len(tarBytes)),
		[]string{"bin/sh", "/etc/hosts", "etc//hosts", "missing", "../etc/hosts"})
	want := []string{"bin/sh", "/etc/hosts", "etc//hosts", "../etc/hosts"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("presentFiles() = %q, %v, want %q", got, err, want)
	}
}

func TestErrorClass(t *testing.T) {
	tests := []struct {
		name string
		in   error
		want error
	}{
		{name: "credentials", in: docker.ErrUnauthorizedForCredentials{Err: errors.New("x")}, want: ErrUnauthorized},
		{name: "unauthorized", in: fmt.Errorf("w: %w", errcode.ErrorCodeUnauthorized.WithMessage("no")), want: ErrUnauthorized},
		{name: "denied", in: errcode.ErrorCodeDenied.WithMessage("no"), want: ErrUnauthorized},
		{name: "manifest-unknown", in: fmt.Errorf("w: %w", errcode.Error{Code: manifestUnknownCode(t)}), want: ErrNotFound},
		{name: "error-list", in: fmt.Errorf("w: %w", errcode.Errors{errcode.Error{Code: manifestUnknownCode(t)}}), want: ErrNotFound},
		{name: "dial", in: &net.OpError{Op: "dial", Err: errors.New("refused")}, want: ErrUnreachable},
		{name: "dns", in: &net.DNSError{Err: "no such host", Name: "x"}, want: ErrUnreachable},
		{name: "reset", in: &url.Error{Op: "Patch", URL: "u", Err: &net.OpError{Op: "read", Err: errors.New("reset")}}, want: ErrInterrupted},
		{name: "hung-up", in: &url.Error{Op: "Put", URL: "u", Err: io.EOF}, want: ErrInterrupted},
		{name: "other", in: errors.New("other"), want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorClass(tt.in); got != tt.want { //nolint:errorlint // comparing sentinels returned as-is
				t.Errorf("errorClass(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// manifestUnknownCode finds MANIFEST_UNKNOWN among the codes containers/image registered.
func manifestUnknownCode(t *testing.T) errcode.ErrorCode {
	t.Helper()
	for _, g := range errcode.GetGroupNames() {
		for _, d := range errcode.GetErrorCodeGroup(g) {
			if d.Value == "MANIFEST_UNKNOWN" {
				return d.Code
			}
		}
	}
	t.Fatal("MANIFEST_UNKNOWN not registered")
	return 0
}
