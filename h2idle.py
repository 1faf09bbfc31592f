#!/usr/bin/env python3
"""h2idle.py PORT [tls] [requests]: open h2 connection, optionally do N requests, then idle; report GOAWAY and time."""
import socket,ssl,struct,time,sys
port=int(sys.argv[1]); tls=len(sys.argv)>2 and sys.argv[2]=='tls'; nreq=int(sys.argv[3]) if len(sys.argv)>3 else 0
def frame(t,flags,sid,payload=b''): return struct.pack('>I',len(payload))[1:]+bytes([t,flags])+struct.pack('>I',sid)+payload
s=socket.create_connection(('127.0.0.1',port))
if tls:
    ctx=ssl.create_default_context(); ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE; ctx.set_alpn_protocols(['h2']); s=ctx.wrap_socket(s,server_hostname='localhost')
s.settimeout(120); t=time.time()
s.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'+frame(4,0,0))
for i in range(nreq):
    s.sendall(frame(1,5,1+2*i,(b'\x82\x87' if tls else b'\x82\x86')+b'\x04\x03/ok\x01\x09localhost'))
buf=b''; go=None; t_last=time.time()
while True:
    try: d=s.recv(65536)
    except Exception as e: print('exc',e); break
    if not d: break
    buf+=d
    while len(buf)>=9:
        l=int.from_bytes(buf[:3],'big'); ty=buf[3]
        if len(buf)<9+l: break
        p=buf[9:9+l]; buf=buf[9+l:]
        if ty==4 and not buf[4:5]: pass
        if ty==7: go=(int.from_bytes(p[:4],'big'),int.from_bytes(p[4:8],'big'),p[8:]); print('GOAWAY last_stream=%d code=%d debug=%r at %.1fs'%(go[0],go[1],go[2],time.time()-t))
print('closed at %.1fs goaway=%s'%(time.time()-t,go))
