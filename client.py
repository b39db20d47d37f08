import socket
c = socket.create_connection(('127.0.0.1', 40929))
c.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n')
body = b'a' * 65536
sent = 0
try:
    while sent < 20000000:
        sent += c.send(body)
except Exception as e:
    print('write error after', sent, e)
try:
    print('read:', c.recv(4096)[:60])
except Exception as e:
    print('read error', e)
