-- TCP state counts per snapshot: a rising SYN_SENT, CLOSE_WAIT or TIME_WAIT line is worth a look.
PIVOT (SELECT ts, state FROM sockets WHERE proto = 'tcp')
ON state IN ('ESTABLISHED', 'LISTEN', 'SYN_SENT', 'SYN_RECV', 'TIME_WAIT', 'CLOSE_WAIT', 'FIN_WAIT1', 'FIN_WAIT2', 'LAST_ACK')
USING count(*)
GROUP BY ts
ORDER BY ts;
