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
