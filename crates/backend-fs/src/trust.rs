//! Whether another user than the current one may write a folder or file of the store. The
//! default layout ([`Layout::Auto`](crate::Layout::Auto)) makes and reads an index only where
//! nobody else may write it, since LMDB trusts what it reads (see the crate's documentation,
//! "The default layout").
//!
//! A folder or file is the current user's alone when it belongs to the user (the effective user
//! id of the process) or to the superuser (who may write anything anyway), others may not write
//! it, and its group may write it only when that group is the user's *private group*: the scheme of Debian, Ubuntu and Fedora, where each user's
//! primary group has the user's name and nobody else in it, and the usual `umask` of 002 makes
//! every new folder writable by that group. The private group is read from `/etc/passwd` and
//! `/etc/group`; users and groups from elsewhere (a directory service) have none, and a folder
//! their group may write is not theirs alone.
//!
//! A POSIX access control list (ACL) may let named users and groups write a file whose mode
//! says nothing of them. Its *mask* is then shown as the mode's group bits, and a named entry may
//! write only where the mask may, so a file whose group bits allow writing has its ACL read
//! (the extended attribute `system.posix_acl_access`, parsed here: no crate of the registry
//! reads one without `libacl`): one naming a user or a group that may write it, or one that
//! cannot be read or parsed, makes it not the user's alone.

use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::OnceLock;

use rustix::io::Errno;

/// The most bytes read of `/etc/passwd` or `/etc/group`: a longer file is not read whole, and
/// the user then has no private group.
const ACCOUNTS_MAX: u64 = 16 << 20;

/// The extended attribute that holds a file's POSIX access ACL.
const ACL_XATTR: &str = "system.posix_acl_access";

/// The most bytes of an extended attribute's value (Linux's `XATTR_SIZE_MAX`): an ACL is read
/// whole.
const XATTR_MAX: usize = 1 << 16;

/// A folder or file whose ACL may be read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    /// The folder or file open as this handle.
    Open(BorrowedFd<'a>),
    /// The entry of this name in the folder open as this handle, not followed if it is a
    /// link. Not opened: a process that closes a handle on LMDB's lock file loses LMDB's
    /// locks on it, so it is reached through `/proc/self/fd`.
    In(BorrowedFd<'a>, &'a str),
}

/// Why another user than the current one may write the folder or file `subject`, whose status
/// is `stat`; `None` if nobody else may (but the superuser).
pub(crate) fn others_may_write(subject: Subject<'_>, stat: &rustix::fs::Stat) -> Option<String> {
    others_may_write_as(rustix::process::geteuid().as_raw(), stat)
        .or_else(|| acl_lets_others_write(subject, stat))
}

/// Why the ACL of `subject` (whose status is `stat`) may let another user write it: a named
/// user or group that may, or an ACL that cannot be read or parsed. `None` when its mask (the
/// mode's group bits) does not allow writing, or it has no ACL, or none that names a writer.
#[allow(clippy::unnecessary_cast)]
fn acl_lets_others_write(subject: Subject<'_>, stat: &rustix::fs::Stat) -> Option<String> {
    if stat.st_mode as u32 & 0o020 == 0 {
        return None;
    }
    let mut value = vec![0u8; XATTR_MAX];
    let read = match subject {
        Subject::Open(fd) => rustix::fs::fgetxattr(fd, ACL_XATTR, &mut value[..]),
        Subject::In(dir, name) => rustix::fs::lgetxattr(
            format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()),
            ACL_XATTR,
            &mut value[..],
        ),
    };
    match read {
        Ok(len) => acl_writer(
            value.get(..len).unwrap_or_default(),
            rustix::process::geteuid().as_raw(),
            private_group(),
        )
        .map(|who| format!("its access control list lets {who} write it")),
        // No ACL, or a file system without them: the mode says it all.
        Err(Errno::NODATA | Errno::OPNOTSUPP) => None,
        Err(e) => Some(format!(
            "its group may write it and its access control list cannot be read ({e})"
        )),
    }
}

/// The first named user or group that the POSIX ACL `acl` lets write (as its extended
/// attribute holds it: a version of 2, then entries of a tag, permissions and an id, all
/// little-endian), but the user `me` and the user's private group `mine`, or what makes it
/// unreadable. `None` if it names no other writer.
fn acl_writer(acl: &[u8], me: u32, mine: Option<u32>) -> Option<String> {
    const VERSION: u32 = 2;
    const NAMED_USER: u16 = 0x02;
    const NAMED_GROUP: u16 = 0x08;
    const WRITE: u16 = 0x02;
    let Some((version, entries)) = acl.split_first_chunk::<4>() else {
        return Some("an access control list too short to read".to_owned());
    };
    if u32::from_le_bytes(*version) != VERSION || entries.len() % 8 != 0 {
        return Some("an access control list of an unknown format".to_owned());
    }
    entries.chunks_exact(8).find_map(|entry| {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        let perm = u16::from_le_bytes([entry[2], entry[3]]);
        let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        if perm & WRITE == 0 {
            return None;
        }
        match tag {
            NAMED_USER if id != me => Some(format!("user {id}")),
            NAMED_GROUP if Some(id) != mine => Some(format!("group {id}")),
            _ => None,
        }
    })
}

/// [`others_may_write`] for the user `me`.
// The field types of `struct stat` differ between platforms.
#[allow(clippy::unnecessary_cast)]
fn others_may_write_as(me: u32, stat: &rustix::fs::Stat) -> Option<String> {
    let owner = stat.st_uid as u32;
    let mode = stat.st_mode as u32 & 0o7777;
    if owner != me && owner != 0 {
        return Some(format!(
            "it belongs to user {owner}, and this process runs as user {me}"
        ));
    }
    if mode & 0o002 != 0 {
        return Some(format!("every user may write it (mode {mode:o})"));
    }
    let group = stat.st_gid as u32;
    if mode & 0o020 != 0 && private_group() != Some(group) {
        return Some(format!(
            "the members of its group {group} may write it (mode {mode:o}), and that group is not this user's private group"
        ));
    }
    None
}

/// The current user's private group, if the user has one (see the module's documentation).
fn private_group() -> Option<u32> {
    static GROUP: OnceLock<Option<u32>> = OnceLock::new();
    *GROUP.get_or_init(|| {
        let me = rustix::process::geteuid().as_raw();
        let passwd = read_accounts("/etc/passwd")?;
        let group = read_accounts("/etc/group")?;
        private_group_of(me, &passwd, &group)
    })
}

/// Reads an account file whole, if it is not too long.
fn read_accounts(path: &str) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(ACCOUNTS_MAX + 1).read_to_string(&mut text).ok()?;
    (text.len() as u64 <= ACCOUNTS_MAX).then_some(text)
}

/// The private group of user `uid`, given the texts of `/etc/passwd` and `/etc/group`: the
/// user's primary group, when it has the user's name, lists no member but the user, and is the
/// primary group of no other user.
fn private_group_of(uid: u32, passwd: &str, group: &str) -> Option<u32> {
    // name:password:uid:gid:...
    let users = passwd.lines().filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse::<u32>().ok()?;
        let gid = fields.next()?.parse::<u32>().ok()?;
        Some((name, uid, gid))
    });
    let mut name = None;
    let mut gid = None;
    let mut sharers = Vec::new();
    for (user, user_id, group_id) in users {
        if user_id == uid {
            if name.is_some() {
                // Two entries for one user: which one the system uses is not known here.
                return None;
            }
            name = Some(user);
            gid = Some(group_id);
        } else {
            sharers.push(group_id);
        }
    }
    let (name, gid) = (name?, gid?);
    if sharers.contains(&gid) {
        return None;
    }
    // name:password:gid:member,member
    let mut found = false;
    for line in group.lines() {
        let mut fields = line.split(':');
        let (Some(group_name), Some(_password), Some(group_id), Some(members)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if group_id.parse::<u32>().ok() != Some(gid) {
            continue;
        }
        if found || group_name != name || members.split(',').any(|m| !m.is_empty() && m != name) {
            return None;
        }
        found = true;
    }
    found.then_some(gid)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        ana:x:1000:1000:Ana:/home/ana:/bin/bash\n\
        bo:x:1001:100:Bo:/home/bo:/bin/bash\n\
        cy:x:1002:100:Cy:/home/cy:/bin/bash\n\
        di:x:1003:1003:Di:/home/di:/bin/bash\n\
        eve:x:1004:1005::/home/eve:/bin/sh\n\
        fay:x:1006:1006::/home/fay:/bin/sh\n\
        gus:x:1007:1006::/home/gus:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        users:x:100:\n\
        ana:x:1000:\n\
        di:x:1003:di,eve\n\
        team:x:1005:\n\
        fay:x:1006:\n";

    #[test]
    fn a_private_group_has_the_users_name_and_nobody_else() {
        assert_eq!(private_group_of(1000, PASSWD, GROUP), Some(1000));
        // A group that other users have as their primary group, or lists as members.
        assert_eq!(private_group_of(1001, PASSWD, GROUP), None, "users");
        assert_eq!(private_group_of(1003, PASSWD, GROUP), None, "di lists eve");
        // A group named otherwise, or the primary group of another user too.
        assert_eq!(private_group_of(1004, PASSWD, GROUP), None, "team");
        assert_eq!(private_group_of(1006, PASSWD, GROUP), None, "gus shares it");
        // A user or a group that is not in the files.
        assert_eq!(private_group_of(4242, PASSWD, GROUP), None);
        assert_eq!(private_group_of(1000, PASSWD, "root:x:0:\n"), None);
        // Two entries for one group, or for one user.
        let twice = format!("{GROUP}ana:x:1000:bo\n");
        assert_eq!(private_group_of(1000, PASSWD, &twice), None);
        let twice = format!("{PASSWD}ana:x:1000:100::/:/bin/sh\n");
        assert_eq!(private_group_of(1000, &twice, GROUP), None);
        // Lines that do not parse are skipped.
        let junk = format!("garbage\n:::\n{GROUP}");
        assert_eq!(private_group_of(1000, PASSWD, &junk), Some(1000));
    }

    #[test]
    fn what_others_may_write_is_said() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let handle = std::fs::File::open(dir.path()).unwrap();
        let it = Subject::Open(handle.as_fd());
        let stat = |mode: u32| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            rustix::fs::stat(dir.path()).unwrap()
        };
        assert_eq!(others_may_write(it, &stat(0o700)), None);
        // Another owner; the superuser is trusted by everybody.
        let mut st = stat(0o755);
        st.st_uid = 4242;
        let why = others_may_write_as(1000, &st).unwrap();
        assert!(
            why.contains("user 4242") && why.contains("user 1000"),
            "{why}"
        );
        st.st_uid = 1000;
        assert_eq!(others_may_write_as(1000, &st), None);
        st.st_uid = 0;
        assert_eq!(others_may_write_as(1000, &st), None);
        assert_eq!(others_may_write(it, &stat(0o755)), None);
        let why = others_may_write(it, &stat(0o757)).unwrap();
        assert!(why.contains("every user") && why.contains("757"), "{why}");
        let st = stat(0o775);
        let group = st.st_gid;
        match others_may_write(it, &st) {
            None => assert_eq!(private_group(), Some(group)),
            Some(why) => assert!(why.contains(&format!("group {group}")), "{why}"),
        }
    }

    /// The value of a POSIX access ACL: its entries of a tag, permissions and an id.
    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut value = 2u32.to_le_bytes().to_vec();
        for &(tag, perm, id) in entries {
            value.extend(tag.to_le_bytes());
            value.extend(perm.to_le_bytes());
            value.extend(id.to_le_bytes());
        }
        value
    }

    const ANY: u32 = u32::MAX;

    #[test]
    fn an_acl_names_the_others_it_lets_write() {
        let base = [
            (0x01, 7, ANY),
            (0x04, 7, ANY),
            (0x10, 7, ANY),
            (0x20, 0, ANY),
        ];
        assert_eq!(acl_writer(&acl(&base), 1000, Some(1000)), None);
        let with = |entry| {
            let mut entries = base.to_vec();
            entries.insert(1, entry);
            acl_writer(&acl(&entries), 1000, Some(1000))
        };
        assert_eq!(with((0x02, 6, 4242)).as_deref(), Some("user 4242"));
        assert_eq!(with((0x08, 2, 77)).as_deref(), Some("group 77"));
        // Named entries that may only read, or that name the user and the user's own group.
        assert_eq!(with((0x02, 5, 4242)), None);
        assert_eq!(with((0x08, 4, 77)), None);
        assert_eq!(with((0x02, 7, 1000)), None);
        assert_eq!(with((0x08, 7, 1000)), None);
        // What cannot be parsed is not trusted.
        assert!(
            acl_writer(&[2, 0], 1000, None)
                .unwrap()
                .contains("too short")
        );
        let mut odd = acl(&base);
        odd.push(0);
        assert!(
            acl_writer(&odd, 1000, None)
                .unwrap()
                .contains("unknown format")
        );
        let mut version = acl(&base);
        version[0] = 3;
        assert!(
            acl_writer(&version, 1000, None)
                .unwrap()
                .contains("unknown format")
        );
    }

    /// An ACL is read from a handle and from a folder's entry, and counts only where the
    /// mode's group bits (its mask) allow writing.
    #[test]
    fn an_acl_that_lets_others_write_is_found() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, b"").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let folder = std::fs::File::open(dir.path()).unwrap();
        let in_folder = Subject::In(folder.as_fd(), "data");
        let status = || rustix::fs::stat(&file).unwrap();
        assert_eq!(acl_lets_others_write(in_folder, &status()), None, "no ACL");
        let others = acl(&[
            (0x01, 6, ANY),
            (0x02, 6, 4242),
            (0x04, 6, ANY),
            (0x10, 6, ANY),
            (0x20, 0, ANY),
        ]);
        rustix::fs::setxattr(&file, ACL_XATTR, &others, rustix::fs::XattrFlags::empty())
            .expect("this file system keeps POSIX ACLs");
        let why = acl_lets_others_write(in_folder, &status()).unwrap();
        assert!(why.contains("user 4242"), "{why}");
        let handle = std::fs::File::open(&file).unwrap();
        let why = others_may_write(Subject::Open(handle.as_fd()), &status()).unwrap();
        assert!(why.contains("access control list"), "{why}");
        // A mask that does not allow writing: the named user may not write either.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            acl_lets_others_write(in_folder, &status()),
            None,
            "mask r--"
        );
        // A link is not followed.
        std::os::unix::fs::symlink(&file, dir.path().join("link")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o660)).unwrap();
        let mut st = status();
        assert!(acl_lets_others_write(in_folder, &st).is_some());
        st.st_mode |= 0o020;
        let link = Subject::In(folder.as_fd(), "link");
        assert_eq!(acl_lets_others_write(link, &st), None, "the link's own");
    }
}
