// A DC-09 receiver that no one on this project wrote: the standalone `sia`
// class of the npm package iobroker.sia (MIT), run without the ioBroker
// runtime. It checks CRC, length, account and (with TIMEOUT > 0) the
// timestamp window, and answers ACK or NAK. Used by the interop test.
// env: PORT, ACCOUNTS (comma list), TIMEOUT (seconds, 0 = no check)
const { sia } = require('iobroker.sia/build/lib/sia');
const port = Number(process.env.PORT || 12000);
const log = {
  info: (m) => console.log('INFO ' + m),
  debug: () => {},
  warn: (m) => console.log('WARN ' + m),
  error: (m) => console.log('ERROR ' + m),
};
const srv = new sia({ host: '127.0.0.1', port, timeout: Number(process.env.TIMEOUT ?? 0), sockend: false, logger: log });
srv.setAccounts((process.env.ACCOUNTS || '1234').split(',').map((a) => ({ accountnumber: a, aes: false, hex: false, password: '' })));
srv.on('sia', (ev, err) => {
  if (err) {
    console.log('REJECTED ' + err);
    return;
  }
  console.log('EVENT ' + JSON.stringify({ id: ev.id, seq: ev.seq, act: ev.act, msg: ev.data_message, ext: ev.data_extended, ts: ev.ts }));
});
srv.on('error', (e) => console.log('ERROR socket ' + e));
srv.serverStartTCP();
console.log('LISTENING ' + port);
