// SPDX-License-Identifier: Apache-2.0

// Command hostile writes the hostile images of the e2e tests
// (tests/bats/85-hostile-images.bats) as one OCI image layout: each image
// is a base image (the busybox fixture, so that it runs) plus one lazy
// layer whose table of contents lies (huge chunks and spans, end offsets
// past the blob, landmarks beyond the data, owners past 2^32, link
// chains, entry counts over the cap) or is valid but large. The payload
// of every layer is real, so that a runtime that ignores the TOC (a
// normal pull) gets a working image.
//
// Usage:
//
//	hostile -base OCI-LAYOUT -out OCI-LAYOUT
//
// Each image is tagged with its case name in the output layout, and
// OUT/cases.json says what the store must do with each: refuse it (a
// lookup answers ENOENT and storage pulls the layer normally) or serve it
// lazily, which file to check and its sha256.
//
// It is test tooling, not shipped.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
)

// testCase is one line of cases.json.
type testCase struct {
	Name string `json:"name"`
	// Format is the hostile layer's: "estargz" or "zstd:chunked".
	Format string `json:"format"`
	// Expect is "refused" or "lazy".
	Expect string `json:"expect"`
	// File is a file of the hostile layer, and SHA256 its content's.
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	// Links, when > 0, is File's link count.
	Links int `json:"links,omitempty"`
	// PrefetchBytes is the size of the prioritized region, if any.
	PrefetchBytes int64 `json:"prefetchBytes,omitempty"`
	// Why says what the TOC claims.
	Why string `json:"why"`
}

func main() {
	base := flag.String("base", "", "OCI image layout of the base image (tag latest)")
	out := flag.String("out", "", "OCI image layout to write")
	flag.Parse()
	if *base == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*base, *out); err != nil {
		log.Fatalf("hostile: %v", err)
	}
}

func run(base, out string) error {
	b, err := readBase(base)
	if err != nil {
		return fmt.Errorf("base image %s: %w", base, err)
	}
	l, err := newLayout(out)
	if err != nil {
		return err
	}
	var cases []testCase
	for _, mk := range allCases {
		tc, layer, err := mk()
		if err != nil {
			return fmt.Errorf("case %s: %w", tc.Name, err)
		}
		if err := l.addImage(b, tc.Name, layer); err != nil {
			return fmt.Errorf("case %s: %w", tc.Name, err)
		}
		cases = append(cases, tc)
		log.Printf("hostile: %s: %s layer of %d bytes, expect %s: %s", tc.Name, tc.Format, len(layer.blob), tc.Expect, tc.Why)
	}
	if err := l.finish(); err != nil {
		return err
	}
	js, err := json.MarshalIndent(cases, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "cases.json"), append(js, '\n'), 0o644)
}
