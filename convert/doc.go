// SPDX-License-Identifier: Apache-2.0

// Package convert rewrites a container image into eStargz so that stargz-store can serve its layers
// lazily, with no daemon: only containers/image's docker, oci and oci-archive transports.
//
// [Image] reads an image from a registry, an OCI layout or an OCI archive (containers-storage goes
// through `podman save --format oci-archive` and `podman load`, since containers/image's storage
// transport needs the containers/storage root package, which this module cannot build against). A
// manifest list or OCI index is converted platform by platform and written as an OCI index, unless
// Options.Platform picks one instance. Every layer is downloaded in full, decompressed (gzip, zstd
// or none) into a temporary file, rebuilt as eStargz with store/estargz, and uploaded. The OCI
// manifest carries, for each layer, the TOC digest annotation
// (containerd.io/snapshot/stargz/toc.digest) and the uncompressed size annotation
// (io.containers.estargz.uncompressed-size) that Podman's Additional Layer Store protocol needs; the
// config's rootfs.diff_ids are replaced, everything else in the config is kept.
//
// With Options.ExternalTOC the TOCs go into a separate "TOC image" tagged "<tag>-esgztoc"
// (stargz-snapshotter's convention, which the store follows too): each of its layers is a TOC
// blob annotated with containerd.io/snapshot/stargz/layer.digest, and the layer blobs end in the
// 46-byte external footer. Only then can Options.KeepDiffID keep the DiffIDs: the blob is then a
// lossless re-compression of the source tar, whereas an embedded TOC is itself a tar entry.
//
// Layers that already carry a TOC digest annotation are copied unchanged, so converting a converted
// image is idempotent (a layer whose TOC is external is converted again, which gives the same blob).
//
// Memory use is bounded: blobs stream through temporary files under Options.TempDir, which are removed
// before Image returns; a few layers (Options.Parallelism) are converted at once. The destination is
// tagged last, after every blob, instance manifest and TOC image was written, so a failed conversion
// never moves the destination tag.
//
// Progress goes to Options.Progress: a line per finished layer, or live per-layer bars on a terminal
// (Options.ProgressBars).
package convert
