//! A pod's `lo`, brought up by berthd on the thread that made (or joined)
//! the pod's network namespace: one rtnetlink request, where the CNI
//! loopback plugin was an exec of a Go binary per pod for the same single
//! flag (about a tenth of the CPU a node spent starting pods, measured with
//! 110 pods). CRI-O brings `lo` up itself too. Nothing is needed at
//! teardown: `lo` goes with the namespace when its pin is removed.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::{
    link::{LinkAttribute, LinkFlags, LinkMessage},
    RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{Error, Result};

/// Sets `lo` up in the calling thread's network namespace (a netlink
/// socket belongs to the namespace its creator was in).
pub(crate) fn bring_up_lo() -> Result<()> {
    let fail = |step: &'static str| move |source: std::io::Error| Error::Loopback { step, source };
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail("open a netlink socket"))?;
    socket.bind_auto().map_err(fail("bind the netlink socket"))?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(fail("connect the netlink socket"))?;

    let mut link = LinkMessage::default();
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    // Looked up by name (index 0): `lo` is 1 in a new namespace, but the
    // kernel need not promise it.
    link.attributes.push(LinkAttribute::IfName("lo".into()));
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut request = NetlinkMessage::new(header, NetlinkPayload::from(RouteNetlinkMessage::SetLink(link)));
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0).map_err(fail("send the request"))?;

    // An acknowledgement: the error header and a copy of the request's.
    let mut answer = Vec::with_capacity(4096);
    socket.recv(&mut answer, 0).map_err(fail("read the answer"))?;
    let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&answer)
        .map_err(|e| Error::Loopback { step: "read the answer", source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()) })?;
    match answer.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(Error::Loopback { step: "set lo up", source: e.to_io() }),
        NetlinkPayload::Error(_) => Ok(()),
        other => Err(Error::Loopback {
            step: "read the answer",
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("expected an acknowledgement, got {other:?}")),
        }),
    }
}
