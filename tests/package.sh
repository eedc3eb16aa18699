#!/usr/bin/env bash
# The Debian package end to end, on this machine: build it (`cargo deb`), install it with apt-get
# (its dependencies come too), check what it installed and that it works (man pages, completions,
# `shadowgate check`, the policy, the units), upgrade it over an edited configuration, purge it
# (the event store stays unless asked). Run as root on Debian (CI: .ci/run runs it):
#
#     tests/package.sh                 # builds with the `ci` profile; PROFILE=release for release
#     PACKAGE_PREBUILT=1 tests/package.sh   # packages target/ci/shadowgate as built (no cargo build)
#
# Every check runs even after one failed; the script exits 1 if any did. Whatever happens, it
# leaves the machine as it found it: the package purged, the account and the folders it created
# removed. It refuses to run where shadowgate is already installed or configured.
set -uo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-ci}
export DEBIAN_FRONTEND=noninteractive
CONF=/etc/shadowgate/shadowgate.toml
POLICIES=/etc/shadowgate/policies
work=$(mktemp -d /tmp/sg-package.XXXXXX)
failures=0
started=$(date +%s)

note() { printf '== [%3ss] %s\n' "$(($(date +%s) - started))" "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    failures=$((failures + 1))
}
# check DESCRIPTION COMMAND...: the command must succeed.
check() {
    local what=$1
    shift
    if ! "$@" >"$work/out" 2>&1; then
        fail "$what: \`$*\`: $(head -c 2000 "$work/out")"
    fi
}
die() {
    printf 'FATAL: %s\n' "$*" >&2
    exit 2
}

# --- refuse to touch a real installation ---------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (it installs and purges the package)"
command -v apt-get >/dev/null || die "needs apt-get (Debian)"
if dpkg-query -W -f='${Status}' shadowgate 2>/dev/null | grep -q 'installed\|config-files'; then
    die "the shadowgate package is installed here: this test would purge it"
fi
for p in /etc/shadowgate /var/lib/shadowgate /var/log/shadowgate; do
    [ -e "$p" ] && die "$p exists: this test would remove it (move it away first)"
done
had_user=no
getent passwd shadowgate >/dev/null && had_user=yes

cleanup() {
    note "cleanup"
    if dpkg-query -W -f='${Status}' shadowgate 2>/dev/null | grep -q 'installed\|config-files'; then
        SHADOWGATE_PURGE_STORE=yes dpkg --purge shadowgate >/dev/null 2>&1 || true
    fi
    rm -rf /etc/shadowgate /var/lib/shadowgate /var/log/shadowgate /run/shadowgate
    if [ "$had_user" = no ]; then
        userdel shadowgate 2>/dev/null || true
        groupdel shadowgate 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- build ---------------------------------------------------------------------------------
command -v cargo-deb >/dev/null || die "cargo-deb missing: cargo install cargo-deb --locked"
note "cargo deb --profile $PROFILE --fast"
t0=$(date +%s)
# --fast (lighter compression) and no -dbgsym package: the test installs the .deb alone.
# PACKAGE_PREBUILT=1 packages target/$PROFILE/shadowgate as it is (.ci/run: the tests just built
# it; `cargo build` without the dev-dependencies' features would compile much of it again).
prebuilt=()
[ "${PACKAGE_PREBUILT:-}" = 1 ] && prebuilt=(--no-build)
cargo deb --profile "$PROFILE" "${prebuilt[@]}" --fast --no-dbgsym --strip --output "$work/" || die "cargo deb failed"
deb=$(ls "$work"/shadowgate_*.deb) || die "no .deb in $work"
version=$(dpkg-deb -f "$deb" Version)
build_s=$(($(date +%s) - t0))
note "$deb: $(stat -c %s "$deb") bytes, version $version (built in ${build_s}s)"

# The upgrade: the same build under a higher version, its example configuration and a vendor
# catalogue file changed as a later release would change them.
check "second build" cargo deb --profile "$PROFILE" --no-build --no-dbgsym --strip --fast --deb-version "${version%-*}+upgrade" --output "$work/up/"
up_deb=$(ls "$work"/up/shadowgate_*.deb 2>/dev/null)
if [ -n "$up_deb" ]; then
    dpkg-deb -R "$up_deb" "$work/up/tree"
    echo '# changed by the upgrade' >>"$work/up/tree/etc/shadowgate/shadowgate.toml"
    echo '# vendor update' >>"$work/up/tree/usr/share/shadowgate/catalog/vendors.toml"
    (cd "$work/up/tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' |
        xargs -0 md5sum >DEBIAN/md5sums)
    check "repack the upgrade" dpkg-deb --root-owner-group -Zgzip -z1 -b "$work/up/tree" "$work/upgrade.deb"
fi

# --- install -------------------------------------------------------------------------------
note "apt-get install $deb"
if ! apt-get install -y -q "$deb" </dev/null >"$work/install.log" 2>&1; then
    cat "$work/install.log" >&2
    die "apt-get install failed"
fi
sed -n '/^shadowgate:/,$p' "$work/install.log" | grep -v '^Processing\|^Setting up\|^Selecting\|^Preparing\|^Unpacking\|^(Reading' || true
grep -q 'not started' "$work/install.log" ||
    fail "postinst did not say the daemon was left stopped: $(cat "$work/install.log")"
grep -q 'systemctl enable --now shadowgate' "$work/install.log" ||
    fail "postinst did not say how to start the daemon"

note "dpkg -L shadowgate"
dpkg -L shadowgate | sort >"$work/listed"
sed 's/^/  /' "$work/listed"
expected=(
    /usr/bin/shadowgate
    /usr/lib/systemd/system/shadowgate.service
    /usr/lib/systemd/system/shadowgate-report.service
    /usr/lib/systemd/system/shadowgate-report.timer
    /usr/lib/sysusers.d/shadowgate.conf
    /etc/logrotate.d/shadowgate
    "$CONF"
    "$POLICIES/policy.toml"
    "$POLICIES/local/clinic.toml"
    /usr/share/shadowgate/catalog/README.md
    /usr/share/bash-completion/completions/shadowgate
    /usr/share/zsh/vendor-completions/_shadowgate
    /usr/share/fish/vendor_completions.d/shadowgate.fish
    /usr/share/doc/shadowgate/README.md
    /usr/share/doc/shadowgate/OPERATIONS.md
)
for f in policies/catalog/*.toml; do
    [ "$(basename "$f")" = local.toml ] || expected+=("/usr/share/shadowgate/catalog/$(basename "$f")")
done
for f in deploy/man/*.1; do
    expected+=("/usr/share/man/man1/$(basename "$f").gz")
done
for f in "${expected[@]}"; do
    grep -qxF "$f" "$work/listed" || fail "dpkg -L does not list $f"
    [ -e "$f" ] || fail "$f is listed but not installed"
done
[ "${#expected[@]}" -ge 40 ] || fail "only ${#expected[@]} expected files (man pages or catalogue missing?)"

# conffiles: everything under /etc, nothing under /usr.
conffiles=$(dpkg-query -W -f='${Conffiles}\n' shadowgate | awk 'NF {print $1}')
for f in "$CONF" "$POLICIES/policy.toml" "$POLICIES/local/clinic.toml" /etc/logrotate.d/shadowgate; do
    grep -qxF "$f" <<<"$conffiles" || fail "$f is not a conffile"
done
grep -q '^/usr' <<<"$conffiles" && fail "vendor data marked as conffiles: $conffiles"

deps=$(dpkg-deb -f "$deb" Depends)
for d in libnftnl11 libmnl0; do
    grep -q "$d" <<<"$deps" || fail "Depends lacks $d: $deps"
done
grep -q nftables <<<"$(dpkg-deb -f "$deb" Recommends)" || fail "nftables is not recommended"

note "account, owners, modes"
getent passwd shadowgate >/dev/null || fail "no shadowgate account"
[ "$(stat -c '%U:%G %a' /etc/shadowgate)" = "root:shadowgate 750" ] ||
    fail "/etc/shadowgate is $(stat -c '%U:%G %a' /etc/shadowgate), want root:shadowgate 750"
for f in "$CONF" "$POLICIES/policy.toml" "$POLICIES/local/clinic.toml"; do
    [ "$(stat -c '%U:%G %a' "$f")" = "root:shadowgate 640" ] ||
        fail "$f is $(stat -c '%U:%G %a' "$f"), want root:shadowgate 640"
done
[ "$(readlink "$POLICIES/catalog")" = /usr/share/shadowgate/catalog ] ||
    fail "$POLICIES/catalog is not the link to the vendor catalogue"
check "the unit stays disabled" test ! -e /etc/systemd/system/multi-user.target.wants/shadowgate.service

note "the program"
check "shadowgate --version" /usr/bin/shadowgate --version
check "policy check (root)" shadowgate policy check "$POLICIES"
check "policy check (as the daemon's account)" runuser -u shadowgate -- shadowgate policy check "$POLICIES"
check "catalog list of the installed policy" shadowgate catalog list "$POLICIES"

# `shadowgate check` on the example: lan0 does not exist here, so it reports findings (exit 1
# warnings, 2 errors) naming it; a crash, a clean pass or an unknown command is a failure.
rc=0
shadowgate check --config "$CONF" >"$work/check" 2>&1 || rc=$?
if [ "$rc" -ne 1 ] && [ "$rc" -ne 2 ]; then
    fail "shadowgate check --config $CONF exited $rc (want 1 or 2: findings): $(cat "$work/check")"
elif grep -qi 'unrecognized subcommand\|unknown subcommand' "$work/check"; then
    fail "shadowgate has no check command: $(cat "$work/check")"
elif ! grep -q lan0 "$work/check"; then
    fail "shadowgate check does not name the missing interface lan0: $(cat "$work/check")"
fi

note "manual pages"
check "man -w shadowgate" man -w shadowgate
check "man -w shadowgate-run" man -w shadowgate-run
check "man -w shadowgate-policy-check" man -w shadowgate-policy-check
if man -P cat shadowgate-run >"$work/man" 2>/dev/null; then
    grep -q -- '--config' "$work/man" || fail "man shadowgate-run does not show --config"
else
    fail "man shadowgate-run does not render"
fi

note "completions"
# bash-completion's loader sources the file by the command's name; sourcing it is what it does.
cat >"$work/complete.bash" <<'SH'
source /usr/share/bash-completion/completions/shadowgate
COMP_WORDS=(shadowgate brea); COMP_CWORD=1; COMP_LINE="shadowgate brea"; COMP_POINT=${#COMP_LINE}
_shadowgate shadowgate brea shadowgate
printf '%s\n' "${COMPREPLY[@]}"
SH
bash "$work/complete.bash" >"$work/bash.out" 2>&1
grep -qx break-glass "$work/bash.out" || fail "bash does not complete 'shadowgate brea': $(cat "$work/bash.out")"
if command -v zsh >/dev/null; then
    out=$(zsh -fc 'autoload -Uz compinit && compinit -u -d /dev/null && print -r -- ${_comps[shadowgate]}' 2>&1)
    [ "$out" = _shadowgate ] || fail "zsh does not load the completion from its vendor folder: $out"
else
    note "zsh not installed: its completion not tried"
fi
if command -v fish >/dev/null; then
    out=$(HOME=$work fish -c 'complete -C "shadowgate brea"' 2>&1)
    grep -q '^break-glass' <<<"$out" || fail "fish does not complete 'shadowgate brea': $out"
else
    note "fish not installed: its completion not tried"
fi

note "systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
    # Only findings about these units count (the host's own units may have some).
    systemd-analyze verify /usr/lib/systemd/system/shadowgate.service \
        /usr/lib/systemd/system/shadowgate-report.service \
        /usr/lib/systemd/system/shadowgate-report.timer >"$work/verify" 2>&1
    grep -i 'shadowgate' "$work/verify" && fail "systemd-analyze verify: $(cat "$work/verify")"
    grep -q '^ExecStart=/usr/bin/shadowgate run ' /usr/lib/systemd/system/shadowgate.service ||
        fail "the packaged unit does not run /usr/bin/shadowgate"
else
    fail "systemd-analyze missing (apt-get install systemd)"
fi

# --- upgrade over an edited configuration ----------------------------------------------------
note "upgrade"
# The clinic's edit of its configuration, a store with events, and a (wrong) local edit of the
# vendor data.
echo '# edited by the clinic' >>"$CONF"
echo '# local edit of vendor data' >>/usr/share/shadowgate/catalog/vendors.toml
install -d -o shadowgate -g shadowgate -m 0700 /var/lib/shadowgate
install -o shadowgate -m 0600 pcaps/generated/chromium-ai.pcap /var/lib/shadowgate/sample.pcap
runuser -u shadowgate -- shadowgate replay -q --emit decisions --policy "$POLICIES" \
    --store /var/lib/shadowgate/events.db /var/lib/shadowgate/sample.pcap >/dev/null 2>"$work/replay" ||
    fail "replay into the store: $(cat "$work/replay")"
rm -f /var/lib/shadowgate/sample.pcap
[ -s /var/lib/shadowgate/events.db ] || fail "no event store written"
if [ -f "$work/upgrade.deb" ]; then
    apt-get install -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef \
        "$work/upgrade.deb" </dev/null >"$work/upgrade.log" 2>&1 || fail "upgrade failed: $(cat "$work/upgrade.log")"
    [ "$(dpkg-query -W -f='${Version}' shadowgate)" = "$(dpkg-deb -f "$work/upgrade.deb" Version)" ] ||
        fail "the upgrade did not install"
    grep -q '# edited by the clinic' "$CONF" || fail "the upgrade lost the edit of $CONF"
    grep -q '# changed by the upgrade' "$CONF" && fail "the upgrade replaced the edited $CONF"
    grep -q '# changed by the upgrade' "$CONF.dpkg-dist" 2>/dev/null ||
        fail "the new example is not in $CONF.dpkg-dist"
    grep -qi 'Y/I/N/O/D/Z' "$work/upgrade.log" && fail "dpkg asked about the configuration file"
    grep -q '# vendor update' /usr/share/shadowgate/catalog/vendors.toml ||
        fail "the upgrade did not replace the vendor catalogue"
    grep -q '# local edit' /usr/share/shadowgate/catalog/vendors.toml &&
        fail "the vendor catalogue kept a local edit (a conffile?)"
    [ "$(stat -c '%U:%G %a' "$CONF")" = "root:shadowgate 640" ] || fail "$CONF modes after the upgrade"
    check "policy check after the upgrade" runuser -u shadowgate -- shadowgate policy check "$POLICIES"
else
    fail "no upgrade package"
fi

# --- purge ---------------------------------------------------------------------------------
note "purge"
apt-get purge -y -q shadowgate </dev/null >"$work/purge.log" 2>&1 || fail "purge failed: $(cat "$work/purge.log")"
[ -e /etc/shadowgate ] && fail "purge left /etc/shadowgate: $(find /etc/shadowgate)"
[ -s /var/lib/shadowgate/events.db ] || fail "purge removed the event store"
grep -A4 '^shadowgate: kept' "$work/purge.log"
grep -q SHADOWGATE_PURGE_STORE=yes "$work/purge.log" || fail "purge did not say how to remove the store"
[ -e /usr/bin/shadowgate ] && fail "purge left /usr/bin/shadowgate"

note "purge with SHADOWGATE_PURGE_STORE=yes"
apt-get install -y -q "$deb" </dev/null >"$work/install2.log" 2>&1 || fail "reinstall failed: $(cat "$work/install2.log")"
[ -s /var/lib/shadowgate/events.db ] || fail "a reinstall touched the kept store"
SHADOWGATE_PURGE_STORE=yes apt-get purge -y -q shadowgate </dev/null >"$work/purge2.log" 2>&1 ||
    fail "purge failed: $(cat "$work/purge2.log")"
[ -e /var/lib/shadowgate ] && fail "SHADOWGATE_PURGE_STORE=yes purge left /var/lib/shadowgate"

note "$(stat -c %s "$deb") bytes; $(($(date +%s) - started))s in all (build ${build_s}s)"
if [ "$failures" -ne 0 ]; then
    echo "tests/package.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "tests/package.sh: all checks passed"
