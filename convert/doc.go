// SPDX-License-Identifier: Apache-2.0

// Package convert rewrites a container image into eStargz so that stargz-store can serve its layers
// lazily.
//
// [Image] reads an image from a registry, picks the host platform when the reference names a manifest
// list or OCI index, and writes an OCI image to another registry reference. Every layer is downloaded
// in full, decompressed (gzip, zstd or none) into a temporary file, rebuilt as eStargz with
// store/estargz, and uploaded. The OCI manifest carries, for each layer, the TOC digest annotation
// (containerd.io/snapshot/stargz/toc.digest) and the uncompressed size annotation
// (io.containers.estargz.uncompressed-size) that Podman's Additional Layer Store protocol needs; the
// config's rootfs.diff_ids are replaced, everything else in the config is kept.
//
// Layers that already carry a TOC digest annotation are copied unchanged, so converting a converted
// image is idempotent.
//
// Memory use is bounded: blobs stream through temporary files under Options.TempDir, which are removed
// before Image returns. The manifest is pushed last, only after every layer and the config were
// uploaded, so a failed conversion never moves the destination tag.
package convert
