// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/stargz-store/stargz-store/convert"
	"github.com/stargz-store/stargz-store/registryauth"
)

const convertUsage = `usage: stargz-store convert [flags] SRC DST

Converts the image SRC to eStargz (or, with --format zstd:chunked, to zstd:chunked as
podman push writes it) and writes it to DST, then prints the digest of the manifest (or
index) written. SRC and DST are containers/image references:
  docker://HOST/REPO:TAG or HOST/REPO:TAG   a registry
  oci:DIR:TAG                               an OCI layout directory
  oci-archive:FILE:TAG                      an OCI layout tarball
  containers-storage:NAME                   local Podman storage (through podman save/load)
Every platform of a multi-platform SRC is converted unless --platform picks one.
Registry credentials come from --authfile, $REGISTRY_AUTH_FILE or Podman's auth.json;
insecure registries from registries.conf or --plain-http.

flags:
`

// runConvert copies an image to DST with every layer as eStargz and prints
// the new manifest digest last, like skopeo.
func runConvert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stargz-store convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	plainHTTP := fs.Bool("plain-http", false, "allow plain HTTP and unverified TLS for both registries")
	format := fs.String("format", convert.FormatEStargz, "layer format: estargz or zstd:chunked")
	chunkSize := fs.Int("chunk-size", 4<<20, "split files into chunks of this many bytes")
	minChunkSize := fs.Int("min-chunk-size", 0, "pack files smaller than this into shared gzip members (0: off)")
	prioritized := fs.String("prioritized-files", "", "file listing paths to place first and prefetch, one per line")
	externalTOC := fs.Bool("external-toc", false, "store the TOCs in a separate image DST-esgztoc (DST must be a tag)")
	keepDiffID := fs.Bool("keep-diff-id", false, "keep every layer's DiffID (needs --external-toc)")
	platform := fs.String("platform", "", "convert only this platform, os/arch[/variant] (default: all)")
	authFile := fs.String("authfile", "", "auth.json with registry credentials (default: $REGISTRY_AUTH_FILE, then Podman's search order)")
	tmpDir := fs.String("tmp-dir", "", "directory for temporary files (default: $TMPDIR or /tmp)")
	parallel := fs.Int("parallel", 2, "layers converted at once")
	podman := fs.String("podman", "podman", "podman binary for containers-storage: references")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprint(stderr, convertUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("convert: want SRC and DST, got %d arguments", fs.NArg())
	}
	level, err := parseLevel(*logLevel)
	if err != nil {
		return err
	}
	var files []string
	if *prioritized != "" {
		if files, err = readPathList(*prioritized); err != nil {
			return err
		}
	}
	log := newLogger(stderr, level)
	regs, err := registryauth.New(registryauth.Options{AuthFile: *authFile, Logger: log})
	if err != nil {
		return fmt.Errorf("registry configuration: %w", err)
	}
	defer regs.Close()
	d, err := convert.Image(ctx, fs.Arg(0), fs.Arg(1), convert.Options{
		SystemContext:    regs.SystemContext(),
		PlainHTTP:        *plainHTTP,
		Format:           *format,
		ChunkSize:        *chunkSize,
		MinChunkSize:     *minChunkSize,
		PrioritizedFiles: files,
		ExternalTOC:      *externalTOC,
		KeepDiffID:       *keepDiffID,
		Platform:         *platform,
		TempDir:          *tmpDir,
		Parallelism:      *parallel,
		Podman:           *podman,
		Logger:           log,
		Progress:         stderr,
		ProgressBars:     isTerminal(stderr),
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, d)
	return err
}

// readPathList reads one path per line; blank lines and lines starting with # are skipped.
func readPathList(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("prioritized files: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("prioritized files %s: %w", name, err)
	}
	return out, nil
}
