//! Sending UDP batches.

use std::net::UdpSocket;

use farside_io::{SendBatch, send_batch};

use crate::runtime::log_once;

/// [`send_batch`], logging (once) when the kernel refuses segmented sends (S107).
pub fn send(socket: &UdpSocket, batch: &mut SendBatch) -> usize {
    let segmenting = batch.segmenting();
    let sent = send_batch(socket, batch);
    if segmenting && !batch.segmenting() {
        log_once::segmentation_refused(socket);
    }
    sent
}

/// [`send`], for a sender that counts only what is lost: how many of the batch's datagrams the
/// kernel refused (a full send buffer, an unreachable destination).
pub fn send_refused(socket: &UdpSocket, batch: &mut SendBatch) -> u64 {
    let queued = batch.len();
    queued.saturating_sub(send(socket, batch)) as u64
}
