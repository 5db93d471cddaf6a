"""customers: the people who buy (clients) and sell (sellers) on Agora."""
