// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// baseImage is the image every case adds its layer to.
type baseImage struct {
	dir      string
	manifest ocispec.Manifest
	config   map[string]any
}

// readBase reads the image tagged latest (or the only one) of an OCI
// layout.
func readBase(dir string) (*baseImage, error) {
	var idx ocispec.Index
	if err := readJSON(filepath.Join(dir, "index.json"), &idx); err != nil {
		return nil, err
	}
	if len(idx.Manifests) == 0 {
		return nil, fmt.Errorf("no image in %s", dir)
	}
	desc := idx.Manifests[0]
	for _, d := range idx.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] == "latest" {
			desc = d
		}
	}
	b := &baseImage{dir: dir}
	if err := readJSON(blobPath(dir, desc.Digest), &b.manifest); err != nil {
		return nil, err
	}
	if err := readJSON(blobPath(dir, b.manifest.Config.Digest), &b.config); err != nil {
		return nil, err
	}
	return b, nil
}

// layer is a hostile layer: its blob, the DiffID of what it decompresses
// to, and its descriptor's media type and annotations.
type layer struct {
	blob        []byte
	diffID      digest.Digest
	mediaType   string
	annotations map[string]string
}

// layout is an OCI image layout being written.
type layout struct {
	dir       string
	manifests []ocispec.Descriptor
}

func newLayout(dir string) (*layout, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	return &layout{dir: dir}, nil
}

// addImage writes the base image plus l as the image tagged tag.
func (o *layout) addImage(b *baseImage, tag string, l layer) error {
	for _, d := range b.manifest.Layers {
		data, err := os.ReadFile(blobPath(b.dir, d.Digest))
		if err != nil {
			return err
		}
		if _, err := o.blob(data); err != nil {
			return err
		}
	}
	ld, err := o.blob(l.blob)
	if err != nil {
		return err
	}
	ld.MediaType, ld.Annotations = l.mediaType, l.annotations
	config, err := o.config(b, tag, l.diffID)
	if err != nil {
		return err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config,
		Layers:    append(append([]ocispec.Descriptor{}, b.manifest.Layers...), ld),
	}
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	md, err := o.blob(js)
	if err != nil {
		return err
	}
	md.MediaType = ocispec.MediaTypeImageManifest
	md.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	o.manifests = append(o.manifests, md)
	return nil
}

// config is the base config with the layer's DiffID and a history line
// added.
func (o *layout) config(b *baseImage, tag string, diffID digest.Digest) (ocispec.Descriptor, error) {
	var c map[string]any // a deep copy of the base config
	js, err := json.Marshal(b.config)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := json.Unmarshal(js, &c); err != nil {
		return ocispec.Descriptor{}, err
	}
	rootfs, _ := c["rootfs"].(map[string]any)
	if rootfs == nil {
		return ocispec.Descriptor{}, fmt.Errorf("base config has no rootfs")
	}
	ids, _ := rootfs["diff_ids"].([]any)
	rootfs["diff_ids"] = append(ids, diffID.String())
	hist, _ := c["history"].([]any)
	c["history"] = append(hist, map[string]any{"created_by": "hostile " + tag})
	if js, err = json.Marshal(c); err != nil {
		return ocispec.Descriptor{}, err
	}
	d, err := o.blob(js)
	d.MediaType = ocispec.MediaTypeImageConfig
	return d, err
}

// blob stores data and returns its descriptor (digest and size).
func (o *layout) blob(data []byte) (ocispec.Descriptor, error) {
	d := digest.FromBytes(data)
	p := blobPath(o.dir, d)
	if _, err := os.Stat(p); err != nil {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	return ocispec.Descriptor{Digest: d, Size: int64(len(data))}, nil
}

func (o *layout) finish() error {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: o.manifests}
	js, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.dir, "index.json"), js, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(o.dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}
