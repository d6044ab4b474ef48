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

use std::io::Read;
use std::sync::OnceLock;

/// The most bytes read of `/etc/passwd` or `/etc/group`: a longer file is not read whole, and
/// the user then has no private group.
const ACCOUNTS_MAX: u64 = 16 << 20;

/// Why another user than the current one may write the folder or file whose status is `stat`;
/// `None` if nobody else may (but the superuser).
pub(crate) fn others_may_write(stat: &rustix::fs::Stat) -> Option<String> {
    others_may_write_as(rustix::process::geteuid().as_raw(), stat)
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
        let stat = |mode: u32| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            rustix::fs::stat(dir.path()).unwrap()
        };
        assert_eq!(others_may_write(&stat(0o700)), None);
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
        assert_eq!(others_may_write(&stat(0o755)), None);
        let why = others_may_write(&stat(0o757)).unwrap();
        assert!(why.contains("every user") && why.contains("757"), "{why}");
        let st = stat(0o775);
        let group = st.st_gid;
        match others_may_write(&st) {
            None => assert_eq!(private_group(), Some(group)),
            Some(why) => assert!(why.contains(&format!("group {group}")), "{why}"),
        }
    }
}
