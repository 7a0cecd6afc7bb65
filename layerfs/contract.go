// SPDX-License-Identifier: Apache-2.0

package layerfs

// Names of a layer directory <mnt>/<base64(ref)>/<digest>/. They are the
// whole Additional Layer Store contract with containers/storage; each one
// says which storage code relies on it (als-protocol §3.2).
const (
	// diffDir is the unpacked layer. drivers/overlay
	// getAdditionalLayerPath checks that it exists, and storage symlinks
	// <layer>/diff to it, so it becomes an overlayfs lower directory.
	diffDir = "diff"
	// infoFile is read and JSON-decoded by
	// store.go PutAdditionalLayer / layers.go into the layer record.
	infoFile = "info"
	// blobFile must exist (getAdditionalLayerPath); it is read only by
	// layers.go Diff when the layer is exported (push, save).
	blobFile = "blob"
	// useFile is created by drivers/overlay notifyUseAdditionalLayer to
	// take a reference. It must never exist: LOOKUP answers ENOENT and
	// CREATE counts the use and answers ENOENT too.
	useFile = "use"
)

// Modes of the nodes outside diff trees. The mount has no
// default_permissions, so the kernel does not check them against the
// caller; they only have to stat sensibly. Storage never writes here: use
// and release arrive as CREATE and RMDIR, which the kernel forwards without
// a permission check.
const (
	// modeALSDir is the root, reference and layer directories.
	modeALSDir = 0o555
	// modeInfo is the info file (stargz-store serves it world-readable).
	modeInfo = 0o444
	// modeBlob is the blob file; stargz-store serves it 0400, root-owned.
	modeBlob = 0o400
)
