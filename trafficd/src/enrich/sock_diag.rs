//! sock_diag dumps of a network namespace's inet sockets: the one netlink exchange both the
//! socket owners source (cookie -> inode) and the exposure pass (listening sockets) need.
//! sock_diag answers for the namespace of the thread that asks.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::AF_INET,
    inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NetlinkAddr};

/// The sock_diag dump of one family and protocol, in the states `states`.
pub fn dump(
    family: u8,
    protocol: u8,
    states: StateFlags,
) -> std::io::Result<Vec<InetResponseHeader>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = match family {
        AF_INET => SocketId::new_v4(),
        _ => SocketId::new_v6(),
    };
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol,
            extensions: ExtensionFlags::empty(),
            states,
            socket_id,
        })
        .into(),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut sockets = Vec::new();
    let mut receive = vec![0u8; 1 << 16];
    loop {
        let size = socket.recv(&mut &mut receive[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let message = <NetlinkMessage<SockDiagMessage>>::deserialize(&receive[offset..size])
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    sockets.push(response.header);
                }
                NetlinkPayload::Done(_) => return Ok(sockets),
                NetlinkPayload::Error(err) => {
                    return Err(std::io::Error::other(format!("sock_diag: {err:?}")))
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}
