//! A pod's `lo`, brought up by berthd on the thread that made (or joined)
//! the pod's network namespace: one rtnetlink request, where the CNI
//! loopback plugin was an exec of a Go binary per pod for the same single
//! flag (about a tenth of the CPU a node spent starting pods, measured with
//! 110 pods). CRI-O brings `lo` up itself too. Nothing is needed at
//! teardown: `lo` goes with the namespace when its pin is removed.
//!
//! The request is written out here rather than with netlink-packet-route:
//! that crate's message types kept about 220 KiB of berthd's code resident
//! (pagemap of an idle berthd) for one 40-byte message, in a daemon whose
//! idle footprint is budgeted at 12 MiB.

use std::os::fd::AsRawFd;

use nix::sys::socket::{bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};

use crate::error::{Error, Result};

/// Sets `lo` up in the calling thread's network namespace (a netlink
/// socket belongs to the namespace its creator was in).
pub(crate) fn bring_up_lo() -> Result<()> {
    let fail = |step: &'static str| move |e: nix::Error| Error::Loopback { step, source: e.into() };
    let socket = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute).map_err(fail("open a netlink socket"))?;
    bind(socket.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(fail("bind the netlink socket"))?;
    send(socket.as_raw_fd(), &set_lo_up_request(), MsgFlags::empty()).map_err(fail("send the request"))?;
    // The acknowledgement: a header, the error code and the request's header.
    let mut answer = [0u8; 1024];
    let len = recv(socket.as_raw_fd(), &mut answer, MsgFlags::empty()).map_err(fail("read the answer"))?;
    acknowledgement(&answer[..len]).map_err(|source| Error::Loopback { step: "set lo up", source })
}

const SEQUENCE: u32 = 1;

/// RTM_NEWLINK for the link named `lo` (index 0: looked up by name; it is
/// 1 in a new namespace, but the kernel need not promise that) with
/// IFF_UP set in both flags and change mask, acknowledgement asked.
fn set_lo_up_request() -> Vec<u8> {
    const NAME: &[u8] = b"lo\0";
    let attribute_len = 4 + NAME.len();
    let total = 16 + 16 + attribute_len.next_multiple_of(4);
    let mut m = Vec::with_capacity(total);
    // struct nlmsghdr
    m.extend((total as u32).to_ne_bytes());
    m.extend(libc::RTM_NEWLINK.to_ne_bytes());
    m.extend(((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    m.extend(SEQUENCE.to_ne_bytes());
    m.extend(0u32.to_ne_bytes()); // port id: the kernel fills it in
                                  // struct ifinfomsg
    m.extend([libc::AF_UNSPEC as u8, 0]);
    m.extend(0u16.to_ne_bytes()); // device type
    m.extend(0i32.to_ne_bytes()); // index
    m.extend((libc::IFF_UP as u32).to_ne_bytes()); // flags
    m.extend((libc::IFF_UP as u32).to_ne_bytes()); // change mask
                                                   // struct rtattr IFLA_IFNAME
    m.extend((attribute_len as u16).to_ne_bytes());
    m.extend(libc::IFLA_IFNAME.to_ne_bytes());
    m.extend(NAME);
    m.resize(total, 0);
    m
}

/// The kernel's answer to the request: NLMSG_ERROR with error 0 is the
/// acknowledgement; a negative error is the errno.
fn acknowledgement(answer: &[u8]) -> std::io::Result<()> {
    let malformed = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("netlink answer: {what}"));
    let field = |at: usize, len: usize| answer.get(at..at + len).ok_or_else(|| malformed(&format!("{} bytes", answer.len())));
    let kind = u16::from_ne_bytes(field(4, 2)?.try_into().expect("two bytes"));
    let sequence = u32::from_ne_bytes(field(8, 4)?.try_into().expect("four bytes"));
    if kind != libc::NLMSG_ERROR as u16 || sequence != SEQUENCE {
        return Err(malformed(&format!("message type {kind}, sequence {sequence}, not the acknowledgement")));
    }
    match i32::from_ne_bytes(field(16, 4)?.try_into().expect("four bytes")) {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(-errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_one_aligned_rtm_newlink_naming_lo() {
        let m = set_lo_up_request();
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40, "nlmsg_len");
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), libc::RTM_NEWLINK);
        assert_eq!(u32::from_ne_bytes(m[24..28].try_into().unwrap()), libc::IFF_UP as u32, "ifi_flags");
        assert_eq!(u32::from_ne_bytes(m[28..32].try_into().unwrap()), libc::IFF_UP as u32, "ifi_change");
        assert_eq!(u16::from_ne_bytes(m[32..34].try_into().unwrap()), 7, "rta_len");
        assert_eq!(&m[36..40], b"lo\0\0");
    }

    fn answer(kind: u16, sequence: u32, error: i32) -> Vec<u8> {
        [&36u32.to_ne_bytes()[..], &kind.to_ne_bytes(), &0u16.to_ne_bytes(), &sequence.to_ne_bytes(), &0u32.to_ne_bytes(), &error.to_ne_bytes(), &[0; 16]]
            .concat()
    }

    #[test]
    fn the_answer_is_read_as_the_kernel_writes_it() {
        assert!(acknowledgement(&answer(libc::NLMSG_ERROR as u16, SEQUENCE, 0)).is_ok());
        assert_eq!(acknowledgement(&answer(libc::NLMSG_ERROR as u16, SEQUENCE, -libc::EPERM)).unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert_eq!(acknowledgement(&answer(libc::RTM_NEWLINK, SEQUENCE, 0)).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(acknowledgement(&answer(libc::NLMSG_ERROR as u16, 7, 0)).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(acknowledgement(&[0; 10]).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }
}
