// Package packaging is Vigil's Debian packaging: the nfpm configurations
// (vigil.nfpm.yaml, vigil-tools.nfpm.yaml), the maintainer scripts under
// scripts/, the sysusers.d and tmpfiles.d entries, the configuration
// installed as /etc/vigil/vigil.yaml, and build.sh, which `make package`
// runs. It holds no Go code of its own: its test builds the amd64 .deb and
// installs, upgrades, removes and purges it with dpkg in a throwaway root,
// which is how a packaging mistake is found before a technician finds it on
// a Raspberry Pi.
package packaging
