// Package bagit writes and reads BagIt 1.0 bags (RFC 8493) packed in a zip
// file, the container Vigil's police evidence packages use.
//
// # Layout
//
// A bag is one top-level directory of the zip, named after the bag:
//
//	<name>/bagit.txt              "BagIt-Version: 1.0" and "Tag-File-Character-Encoding: UTF-8"
//	<name>/data/...               the payload
//	<name>/manifest-sha256.txt    "<hex>  <path>" for every payload file
//	<name>/manifest-sha512.txt    the same with SHA-512
//	<name>/bag-info.txt           "Label: value" metadata, with Payload-Oxum
//	<name>/...                    other tag files added by the caller
//	<name>/tagmanifest-sha256.txt "<hex>  <path>" for every tag file above
//
// Writer streams each payload file into the zip, hashing it once with SHA-256
// and SHA-512 as it is copied, so memory does not grow with the size of the
// footage. Every entry is stored, not deflated: video does not compress, and
// a stored entry can be checked byte for byte by any zip tool. Manifest lines
// separate digest and path with two spaces, which RFC 8493 allows ("one or
// more linear whitespace characters") and which makes the manifests valid
// input for `sha256sum -c` and `sha512sum -c`.
//
// # Reading
//
// Open reads the zip's directory and refuses, naming the entry, anything a
// hostile archive could use to write outside the directory it is extracted
// to or to show different files to different tools: absolute names, ".."
// or "." elements, empty elements, backslashes, colons, control characters,
// invalid UTF-8, names outside the bag directory, duplicate names (also
// those that differ only in letter case, which collide on Windows and macOS),
// a file that is also a directory, symbolic links and other special files,
// and encrypted entries. It also requires bagit.txt to be exactly the two
// BagIt 1.0 lines.
//
// Bag.Validate then reads every file once and checks what RFC 8493 section 3
// asks of a valid bag: every payload file is listed in every payload
// manifest and every listed file is present, every digest matches, the
// Payload-Oxum is right, and every file a tag manifest lists is present with
// the listed digest. It reports every problem it finds, each naming the path
// and the check, rather than stopping at the first. SHA-256 and SHA-512 are
// the algorithms it supports; a manifest for another algorithm is reported as
// a problem rather than silently skipped. fetch.txt is reported too: an
// evidence bag must hold every file itself.
//
// Manifests detect corruption, not attack: whoever can change a file can
// change the manifests. A caller that needs to detect attack signs the tag
// manifest (the exhibit package does) and treats tag files that no tag
// manifest lists (Result.Unlisted) as unprotected.
package bagit
